// GPU tests of flashmla::mla_decode against the fp64 CPU reference in reference.hpp.
//
// Every TEST_CASE is tagged [gpu]. Without a CUDA driver or GPU each one WARNs
// "skipped: <why>" and returns; ctest reports that as skipped (SKIP_REGULAR_EXPRESSION),
// so nothing else in this file may print that text. Device memory goes through the
// dlopen'ed driver table (jit/driver.hpp); the tests never link libcuda.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "flashmla/flashmla.hpp"
#include "jit/driver.hpp"
#include "reference.hpp"

#define SKIP_WITHOUT_GPU()                         \
  do {                                             \
    std::string why_not;                           \
    if (!flashmla::jit::driver_available(&why_not)) { \
      WARN("skipped: " << why_not);                \
      return;                                      \
    }                                              \
    flashmla::jit::ensure_context();               \
  } while (0)

namespace {

namespace jit = flashmla::jit;
using flashmla::DType;
using flashmla::KernelConfig;

struct Tunables {
  int block_size_q, block_size_k, num_warps, num_stages;
};

struct Case {
  std::string name;
  int b = 1, s_q = 1, h_q = 16, h_kv = 1;
  int latent_dim = 512, page_size = 64;
  DType dtype = DType::bf16;
  bool causal = false;
  std::vector<int> s_k{1};        // cache_seqlens; a single value is used for every sequence
  std::optional<Tunables> pin;    // pinned through DecodeOptions::config; unset: the heuristic
  float softmax_scale = 0.f;      // 0: d_qk^-0.5
  int pad = 0;                    // extra elements in the q/out head strides, the k row stride and
                                  // the block table stride (0: all contiguous, strides passed as 0)
  bool own_stream = false;        // a created stream and caller-provided workspaces
};

std::string describe(const Case& c) {
  std::ostringstream os;
  os << c.name << ": b=" << c.b << " s_q=" << c.s_q << " h_q=" << c.h_q << " h_kv=" << c.h_kv
     << " d_qk=" << c.latent_dim + 64 << " latent_dim=" << c.latent_dim << " page_size=" << c.page_size << ' '
     << flashmla::to_string(c.dtype) << (c.causal ? " causal" : " non-causal") << " s_k={";
  for (size_t i = 0; i < c.s_k.size(); ++i) os << (i ? "," : "") << c.s_k[i];
  os << '}';
  if (c.softmax_scale != 0.f) os << " softmax_scale=" << c.softmax_scale;
  if (c.pad) os << " pad=" << c.pad;
  if (c.own_stream) os << " own stream+workspaces";
  return os.str();
}

std::string tunables_id(const Tunables& t) {
  std::ostringstream os;
  os << 'q' << t.block_size_q << "-k" << t.block_size_k << "-w" << t.num_warps << "-s" << t.num_stages;
  return os.str();
}

flashmla::Arch device_arch() {
  const jit::DeviceInfo info = jit::current_device_info();
  const int sm = info.cc_major * 10 + info.cc_minor;
  return flashmla::Arch{sm, sm == 90};
}

KernelConfig make_config(const Case& c, const Tunables& t) {
  KernelConfig cfg;
  cfg.block_size_q = t.block_size_q;
  cfg.block_size_k = t.block_size_k;
  cfg.num_warps = t.num_warps;
  cfg.num_stages = t.num_stages;
  cfg.latent_dim = c.latent_dim;
  cfg.rope_dim = 64;
  cfg.page_size = c.page_size;
  cfg.dtype = c.dtype;
  cfg.arch = device_arch();
  return cfg;
}

// Device memory through the driver table; freed on scope exit.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes_) FLASHMLA_CU(jit::driver().cuMemAlloc(&ptr_, bytes_));
  }
  ~DeviceBuffer() {
    if (ptr_) jit::driver().cuMemFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <class T = void>
  T* get() const { return reinterpret_cast<T*>(ptr_); }
  template <class T>
  void upload(const std::vector<T>& host) {
    FLASHMLA_CU(jit::driver().cuMemcpyHtoD(ptr_, host.data(), host.size() * sizeof(T)));
  }
  template <class T>
  void download(std::vector<T>& host) const {
    FLASHMLA_CU(jit::driver().cuMemcpyDtoH(host.data(), ptr_, host.size() * sizeof(T)));
  }
  void poison() { FLASHMLA_CU(jit::driver().cuMemsetD8(ptr_, 0xFF, bytes_)); }  // NaN in bf16, fp16, fp32

 private:
  CUdeviceptr ptr_ = 0;
  size_t bytes_;
};

// Host data, strides and reference answer of one case.
struct Problem {
  Case c;
  flashmla::DecodeShape shape;
  std::array<int64_t, 3> q_strides{}, k_strides{}, out_strides{};  // the layouts actually used
  int64_t block_table_stride = 0;
  std::vector<uint16_t> q, k_cache;  // bf16/fp16 bits
  std::vector<int32_t> block_table, seqlens;
  size_t out_elems = 0;  // of the strided out buffer, padding included
  flashmla_test::ReferenceOutputs ref;
};

uint32_t seed_of(const std::string& name) {  // FNV-1a: a fixed seed per case
  uint32_t h = 2166136261u;
  for (char ch : name) h = (h ^ static_cast<unsigned char>(ch)) * 16777619u;
  return h;
}

Problem make_problem(const Case& c) {
  Problem p;
  p.c = c;
  const int d_qk = c.latent_dim + 64;
  std::mt19937 rng(seed_of(c.name));
  for (int bi = 0; bi < c.b; ++bi) p.seqlens.push_back(c.s_k.size() == 1 ? c.s_k[0] : c.s_k.at(bi));

  // Pages: a random permutation of physical blocks, with spare blocks nobody uses.
  std::vector<int> pages(c.b);
  for (int bi = 0; bi < c.b; ++bi) pages[bi] = (p.seqlens[bi] + c.page_size - 1) / c.page_size;
  const int max_blocks_per_seq = *std::max_element(pages.begin(), pages.end()) + 1;
  const int num_blocks = std::accumulate(pages.begin(), pages.end(), 0) + 3;
  std::vector<int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  p.block_table_stride = max_blocks_per_seq + c.pad;
  p.block_table.assign(static_cast<size_t>(c.b) * p.block_table_stride, -1);  // -1 only in the padding
  std::uniform_int_distribution<int32_t> any_block(0, num_blocks - 1);
  for (int bi = 0, next = 0; bi < c.b; ++bi)
    for (int i = 0; i < max_blocks_per_seq; ++i)  // unused columns: valid ids the kernel must not read
      p.block_table[bi * p.block_table_stride + i] = i < pages[bi] ? perm[next++] : any_block(rng);

  p.shape = flashmla::DecodeShape{.b = c.b, .s_q = c.s_q, .h_q = c.h_q, .h_kv = c.h_kv, .latent_dim = c.latent_dim,
                                  .rope_dim = 64, .page_size = c.page_size, .num_blocks = num_blocks,
                                  .max_blocks_per_seq = max_blocks_per_seq, .dtype = c.dtype};
  const int64_t q_h = d_qk + c.pad, k_row = int64_t{c.h_kv} * d_qk + c.pad, out_h = c.latent_dim + c.pad;
  p.q_strides = {c.s_q * c.h_q * q_h, c.h_q * q_h, q_h};
  p.k_strides = {c.page_size * k_row, k_row, d_qk};
  p.out_strides = {c.s_q * c.h_q * out_h, c.h_q * out_h, out_h};
  p.out_elems = static_cast<size_t>(c.b) * p.out_strides[0];

  // Random values everywhere (gaps and unused blocks included), rounded to the dtype; the
  // reference sees the rounded values. q ~ N(0, 2) gives scores of standard deviation ~1.
  auto fill = [&](std::vector<uint16_t>& bits, std::vector<float>& values, size_t n, auto&& draw) {
    bits.resize(n);
    values.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const float x = draw(rng);
      bits[i] = c.dtype == DType::bf16 ? flashmla_test::float_to_bf16(x) : flashmla_test::float_to_half(x);
      values[i] = c.dtype == DType::bf16 ? flashmla_test::bf16_to_float(bits[i]) : flashmla_test::half_to_float(bits[i]);
    }
  };
  std::vector<float> q_values, k_values;
  fill(p.q, q_values, static_cast<size_t>(c.b) * p.q_strides[0], std::normal_distribution<float>(0.f, 2.f));
  fill(p.k_cache, k_values, static_cast<size_t>(num_blocks) * p.k_strides[0],
       std::uniform_real_distribution<float>(-1.f, 1.f));

  flashmla_test::ReferenceInputs in;
  in.b = c.b, in.s_q = c.s_q, in.h_q = c.h_q, in.h_kv = c.h_kv;
  in.latent_dim = c.latent_dim, in.rope_dim = 64, in.page_size = c.page_size;
  in.causal = c.causal;
  in.scale = c.softmax_scale != 0.f ? static_cast<double>(c.softmax_scale) : 1.0 / std::sqrt(double(d_qk));
  in.q = q_values.data(), in.q_strides = p.q_strides;
  in.k_cache = k_values.data(), in.k_strides = p.k_strides;
  in.block_table = p.block_table.data(), in.block_table_stride = p.block_table_stride;
  in.cache_seqlens = p.seqlens.data();
  p.ref = flashmla_test::mla_decode_reference(in);
  return p;
}

// The problem's inputs on the device, uploaded once and reused by every config.
struct DeviceProblem {
  explicit DeviceProblem(const Problem& p)
      : q(p.q.size() * 2), k_cache(p.k_cache.size() * 2), block_table(p.block_table.size() * 4),
        seqlens(p.seqlens.size() * 4), out(p.out_elems * 2), lse(p.ref.lse.size() * 4) {
    q.upload(p.q);
    k_cache.upload(p.k_cache);
    block_table.upload(p.block_table);
    seqlens.upload(p.seqlens);
  }
  DeviceBuffer q, k_cache, block_table, seqlens, out, lse;
};

struct StreamGuard {
  CUstream stream = nullptr;
  ~StreamGuard() {
    if (stream) jit::driver().cuStreamDestroy(stream);
  }
};

// Runs the problem once with `pin` (or the heuristic), then checks out and lse.
void run_and_check(const Problem& p, DeviceProblem& d, const std::optional<KernelConfig>& pin) {
  const Case& c = p.c;
  const auto& drv = jit::driver();
  INFO(describe(c));
  INFO("pinned config: " << (pin ? pin->id() : std::string("none (heuristic)")));

  StreamGuard guard;
  if (c.own_stream) FLASHMLA_CU(drv.cuStreamCreate(&guard.stream, CU_STREAM_NON_BLOCKING));
  d.out.poison();
  d.lse.poison();
  FLASHMLA_CU(drv.cuCtxSynchronize());  // uploads and poison land before any stream runs

  flashmla::DecodeOptions opts;
  opts.config = pin;
  const int64_t bt_stride_arg = c.pad ? p.block_table_stride : 0;
  std::optional<DeviceBuffer> metadata_ws, decode_ws;
  if (c.own_stream) metadata_ws.emplace(flashmla::metadata_workspace_size(p.shape, opts));
  const flashmla::MlaMetadata md =
      flashmla::get_mla_metadata(p.shape, d.seqlens.get<int32_t>(), d.block_table.get<int32_t>(), bt_stride_arg,
                                 guard.stream, metadata_ws ? metadata_ws->get() : nullptr, opts);
  INFO("ran config: " << md.config.id() << ", num_parts " << md.num_parts);
  if (pin) CHECK(md.config == *pin);
  if (c.own_stream) decode_ws.emplace(flashmla::decode_workspace_size(p.shape, md));

  flashmla::DecodeArgs args;
  args.q = d.q.get();
  args.k_cache = d.k_cache.get();
  args.block_table = d.block_table.get<int32_t>();
  args.block_table_stride = bt_stride_arg;
  args.cache_seqlens = d.seqlens.get<int32_t>();
  args.out = d.out.get();
  args.lse = d.lse.get<float>();
  args.softmax_scale = c.softmax_scale;
  args.causal = c.causal;
  if (c.pad) args.q_strides = p.q_strides, args.k_strides = p.k_strides, args.out_strides = p.out_strides;
  flashmla::mla_decode(p.shape, args, md, guard.stream, decode_ws ? decode_ws->get() : nullptr);
  FLASHMLA_CU(drv.cuCtxSynchronize());

  std::vector<uint16_t> out(p.out_elems);
  std::vector<float> lse(p.ref.lse.size());
  d.out.download(out);
  d.lse.download(lse);

  // out: relative L2 and max abs error over the whole tensor; padding must stay poisoned.
  const bool bf16 = c.dtype == DType::bf16;
  const double tol_rel_l2 = bf16 ? 1e-2 : 3e-3, tol_max_abs = bf16 ? 5e-2 : 1e-2;
  double err2 = 0, ref2 = 0, max_abs = 0;
  int64_t out_nan = 0, padding_written = 0;
  std::vector<char> covered(p.out_elems, 0);
  for (int bi = 0; bi < c.b; ++bi)
    for (int s = 0; s < c.s_q; ++s)
      for (int h = 0; h < c.h_q; ++h)
        for (int e = 0; e < c.latent_dim; ++e) {
          const size_t at = bi * p.out_strides[0] + s * p.out_strides[1] + h * p.out_strides[2] + e;
          covered[at] = 1;
          const double got = bf16 ? flashmla_test::bf16_to_float(out[at]) : flashmla_test::half_to_float(out[at]);
          const double want = p.ref.out[((size_t(bi) * c.s_q + s) * c.h_q + h) * c.latent_dim + e];
          if (std::isnan(got)) {
            ++out_nan;
            continue;
          }
          err2 += (got - want) * (got - want);
          ref2 += want * want;
          max_abs = std::max(max_abs, std::abs(got - want));
        }
  for (size_t i = 0; i < p.out_elems; ++i) padding_written += !covered[i] && out[i] != 0xFFFF;
  const double rel_l2 = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);

  // lse: +inf exactly where no key is visible, else within max(2e-3, 1e-3 * |ref|) (fp32 math
  // from exact products is ~1e-6 off; one key of 128 missing moves lse by ~1e-2).
  double lse_max_err = 0;
  int64_t lse_nan = 0, lse_inf_mismatch = 0, lse_out_of_tol = 0;
  for (size_t i = 0; i < lse.size(); ++i) {
    const double got = lse[i], want = p.ref.lse[i];
    if (std::isnan(got)) {
      ++lse_nan;
    } else if (std::isinf(want) || std::isinf(got)) {
      lse_inf_mismatch += got != want;
    } else {
      lse_max_err = std::max(lse_max_err, std::abs(got - want));
      lse_out_of_tol += std::abs(got - want) > std::max(2e-3, 1e-3 * std::abs(want));
    }
  }

  INFO("out: rel L2 error " << rel_l2 << " (tol " << tol_rel_l2 << "), max abs error " << max_abs << " (tol "
                            << tol_max_abs << "), NaN " << out_nan << ", padding written " << padding_written);
  INFO("lse: max abs error " << lse_max_err << ", out of tol (max(2e-3, 1e-3 |ref|)) " << lse_out_of_tol << ", NaN "
                             << lse_nan << ", +inf mismatches " << lse_inf_mismatch);
  CHECK(out_nan == 0);
  CHECK(rel_l2 < tol_rel_l2);
  CHECK(max_abs < tol_max_abs);
  CHECK(padding_written == 0);
  CHECK(lse_nan == 0);
  CHECK(lse_inf_mismatch == 0);
  CHECK(lse_out_of_tol == 0);
}

// run_and_check, turning a library exception into a failed check so that a loop goes on.
void check_config(const Problem& p, DeviceProblem& d, const std::optional<KernelConfig>& pin) {
  const std::string what = pin ? pin->id() : std::string("heuristic config");
  try {
    run_and_check(p, d, pin);
  } catch (const flashmla::CompileError& e) {
    FAIL_CHECK(describe(p.c) << "\n" << what << ": " << e.what() << "\n" << e.log().substr(0, 4000));
  } catch (const std::exception& e) {
    FAIL_CHECK(describe(p.c) << "\n" << what << ": " << e.what());
  }
}

void run_case(const Case& c) {
  std::optional<KernelConfig> pin;
  if (c.pin) {
    pin = make_config(c, *c.pin);
    if (auto reason = pin->invalid_reason()) {  // wording must not match the skip regex
      WARN(c.name << ": config " << pin->id() << " is invalid on this GPU (" << *reason << "); ran unpinned");
      pin.reset();
    }
  }
  const Problem p = make_problem(c);
  DeviceProblem d(p);
  check_config(p, d, pin);
}

Case make_case(std::string name, int b, int s_q, int h_q, int h_kv, int latent_dim, int page_size, DType dtype,
               bool causal, std::vector<int> s_k, std::optional<Tunables> pin = std::nullopt) {
  Case c;
  c.name = std::move(name);
  c.b = b, c.s_q = s_q, c.h_q = h_q, c.h_kv = h_kv;
  c.latent_dim = latent_dim, c.page_size = page_size, c.dtype = dtype, c.causal = causal;
  c.s_k = std::move(s_k);
  c.pin = pin;
  return c;
}

constexpr DType bf16 = DType::bf16, fp16 = DType::fp16;
const std::vector<int> mixed_s_k{0, 1, 77, 0, 300, 128, 4096};  // zeros among them; 128: whole tiles

// The matrix, run with the dispatcher's heuristic config.
std::vector<Case> heuristic_cases() {
  return {
      make_case("h_q=1 s_k=20", 4, 1, 1, 1, 512, 64, bf16, false, {20}),
      make_case("h_q=3 s_q=2 causal s_k=140", 3, 2, 3, 1, 512, 16, fp16, true, {140}),
      make_case("h_q=16 s_q=4 causal mixed s_k", 7, 4, 16, 1, 512, 64, bf16, true, mixed_s_k),
      make_case("h_q=16 s_q=2 non-causal mixed s_k", 7, 2, 16, 1, 512, 32, fp16, false, mixed_s_k),
      make_case("h_q=63 s_k=140", 2, 1, 63, 1, 512, 128, fp16, false, {140}),
      make_case("h_q=128 s_k=4096", 2, 1, 128, 1, 512, 64, bf16, false, {4096}),
      make_case("h_q=128 s_q=2 causal latent 256", 4, 2, 128, 1, 256, 32, fp16, true, {300, 1, 0, 140}),
      make_case("h_kv=2 h_q=32 s_q=2 causal", 3, 2, 32, 2, 512, 32, bf16, true, {1, 20, 140}),
      make_case("h_kv=4 h_q=12 s_q=4", 3, 4, 12, 4, 512, 16, fp16, false, {0, 140, 33}),
      make_case("s_k=1 s_q=4 causal (fully masked rows)", 2, 4, 16, 1, 512, 64, bf16, true, {1, 2}),
      make_case("latent 256 s_k=4096", 2, 1, 16, 1, 256, 128, bf16, false, {4096}),
      make_case("s_q=4 causal s_k=4096 fp16", 2, 4, 16, 1, 512, 64, fp16, true, {4096, 20}),
  };
}

// Configs pinned through DecodeOptions::config on other dtypes, latents and page sizes than
// the sweep below; together with it every tunable value runs at least once.
std::vector<Case> pinned_cases() {
  return {
      make_case("fp16 page 16 q32-k64-w4-s2", 7, 2, 16, 1, 512, 16, fp16, true, mixed_s_k, Tunables{32, 64, 4, 2}),
      make_case("latent 256 page 128 q64-k128-w8-s2", 2, 1, 128, 1, 256, 128, bf16, false, {4096},
                Tunables{64, 128, 8, 2}),
      make_case("latent 256 page 32 q64-k32-w4-s4", 3, 4, 63, 1, 256, 32, fp16, true, {20, 140, 1},
                Tunables{64, 32, 4, 4}),
      make_case("h_kv=2 page 32 q16-k128-w8-s1", 4, 2, 32, 2, 512, 32, bf16, true, {140, 20, 0, 1},
                Tunables{16, 128, 8, 1}),
      make_case("fp16 page 128 q16-k32-w4-s3", 2, 1, 3, 1, 512, 128, fp16, false, {140}, Tunables{16, 32, 4, 3}),
      make_case("h_kv=4 latent 256 page 16 q32-k32-w8-s3", 3, 4, 12, 4, 256, 16, bf16, false, {0, 140, 33},
                Tunables{32, 32, 8, 3}),
  };
}

}  // namespace

TEST_CASE("mla_decode matches the fp64 reference with the heuristic config", "[gpu]") {
  SKIP_WITHOUT_GPU();
  run_case(GENERATE(from_range(heuristic_cases())));
}

TEST_CASE("mla_decode matches the fp64 reference with pinned configs", "[gpu]") {
  SKIP_WITHOUT_GPU();
  run_case(GENERATE(from_range(pinned_cases())));
}

TEST_CASE("mla_decode honours an explicit softmax_scale", "[gpu]") {
  SKIP_WITHOUT_GPU();
  Case c = make_case("softmax_scale=0.1", 2, 2, 16, 1, 512, 64, bf16, true, {140, 20});
  c.softmax_scale = 0.1f;
  run_case(c);
}

TEST_CASE("mla_decode with strided q/k/out/block_table, a created stream and caller workspaces", "[gpu]") {
  SKIP_WITHOUT_GPU();
  Case c = make_case("strided", 3, 2, 16, 1, 512, 64, fp16, true, {300, 0, 77});
  c.pad = 64;
  c.own_stream = true;
  run_case(c);
  c.name = "strided h_kv=2";
  c.h_kv = 2, c.h_q = 32, c.dtype = bf16, c.pad = 8;
  run_case(c);
}

TEST_CASE("mla_decode gives the same answer for every valid tunable combination", "[gpu]") {
  SKIP_WITHOUT_GPU();
  const Case c = make_case("sweep", 5, 2, 16, 1, 512, 64, bf16, true, {1000, 0, 1, 128, 301});
  const Problem p = make_problem(c);
  DeviceProblem d(p);
  std::vector<std::string> invalid;
  int ran = 0;
  for (int block_size_q : {16, 32, 64})
    for (int block_size_k : {32, 64, 128})
      for (int num_warps : {4, 8})
        for (int num_stages = 1; num_stages <= 4; ++num_stages) {
          const Tunables t{block_size_q, block_size_k, num_warps, num_stages};
          const KernelConfig cfg = make_config(c, t);
          if (cfg.invalid_reason()) {
            invalid.push_back(tunables_id(t));
            continue;
          }
          check_config(p, d, cfg);
          ++ran;
        }
  std::string list;
  for (const auto& id : invalid) list += (list.empty() ? "" : ", ") + id;
  WARN("ran " << ran << " configs; " << invalid.size() << " invalid on " << device_arch().name()
              << " and not run: " << list);
  CHECK(ran > 0);
}
