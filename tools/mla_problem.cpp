#include "tools/mla_problem.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <sstream>

#include "jit/driver.hpp"
#include "tools/half.hpp"

namespace flashmla {
namespace {

uint32_t seed_of(const std::string& name) {  // FNV-1a: a fixed seed per case
  uint32_t h = 2166136261u;
  for (char ch : name) h = (h ^ static_cast<unsigned char>(ch)) * 16777619u;
  return h;
}

struct StreamGuard {
  CUstream stream = nullptr;
  ~StreamGuard() {
    if (stream) jit::driver().cuStreamDestroy(stream);
  }
};

}  // namespace

std::string MlaCase::describe() const {
  std::ostringstream os;
  os << name << ": b=" << b << " s_q=" << s_q << " h_q=" << h_q << " h_kv=" << h_kv << " d_qk=" << latent_dim + 64
     << " latent_dim=" << latent_dim << " page_size=" << page_size << ' ' << to_string(dtype)
     << (causal ? " causal" : " non-causal") << " s_k={";
  for (std::size_t i = 0; i < s_k.size(); ++i) os << (i ? "," : "") << s_k[i];
  os << '}';
  if (softmax_scale != 0.f) os << " softmax_scale=" << softmax_scale;
  if (pad) os << " pad=" << pad;
  if (own_stream) os << " own stream+workspaces";
  return os.str();
}

MlaProblem make_problem(const MlaCase& c) {
  MlaProblem p;
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
  p.block_table.assign(static_cast<std::size_t>(c.b) * p.block_table_stride, -1);  // -1 only in the padding
  std::uniform_int_distribution<int32_t> any_block(0, num_blocks - 1);
  for (int bi = 0, next = 0; bi < c.b; ++bi)
    for (int i = 0; i < max_blocks_per_seq; ++i)  // unused columns: valid ids the kernel must not read
      p.block_table[bi * p.block_table_stride + i] = i < pages[bi] ? perm[next++] : any_block(rng);

  p.shape = DecodeShape{.b = c.b, .s_q = c.s_q, .h_q = c.h_q, .h_kv = c.h_kv, .latent_dim = c.latent_dim,
                        .rope_dim = 64, .page_size = c.page_size, .num_blocks = num_blocks,
                        .max_blocks_per_seq = max_blocks_per_seq, .dtype = c.dtype};
  const int64_t q_h = d_qk + c.pad, k_row = int64_t{c.h_kv} * d_qk + c.pad, out_h = c.latent_dim + c.pad;
  p.q_strides = {c.s_q * c.h_q * q_h, c.h_q * q_h, q_h};
  p.k_strides = {c.page_size * k_row, k_row, d_qk};
  p.out_strides = {c.s_q * c.h_q * out_h, c.h_q * out_h, out_h};
  p.out_elems = static_cast<std::size_t>(c.b) * p.out_strides[0];

  // Random values everywhere (gaps and unused blocks included), rounded to the dtype; the
  // reference sees the rounded values. q ~ N(0, 2) gives scores of standard deviation ~1.
  auto fill = [&](std::vector<uint16_t>& bits, std::vector<float>& values, std::size_t n, auto&& draw) {
    bits.resize(n);
    values.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      bits[i] = float_to_half_bits(draw(rng), c.dtype);
      values[i] = half_bits_to_float(bits[i], c.dtype);
    }
  };
  std::vector<float> q_values, k_values;
  fill(p.q, q_values, static_cast<std::size_t>(c.b) * p.q_strides[0], std::normal_distribution<float>(0.f, 2.f));
  fill(p.k_cache, k_values, static_cast<std::size_t>(num_blocks) * p.k_strides[0],
       std::uniform_real_distribution<float>(-1.f, 1.f));

  reference::ReferenceInputs in;
  in.b = c.b, in.s_q = c.s_q, in.h_q = c.h_q, in.h_kv = c.h_kv;
  in.latent_dim = c.latent_dim, in.rope_dim = 64, in.page_size = c.page_size;
  in.causal = c.causal;
  in.scale = c.softmax_scale != 0.f ? static_cast<double>(c.softmax_scale) : 1.0 / std::sqrt(double(d_qk));
  in.q = q_values.data(), in.q_strides = p.q_strides;
  in.k_cache = k_values.data(), in.k_strides = p.k_strides;
  in.block_table = p.block_table.data(), in.block_table_stride = p.block_table_stride;
  in.cache_seqlens = p.seqlens.data();
  p.ref = reference::mla_decode_reference(in);
  return p;
}

DeviceProblem::DeviceProblem(const MlaProblem& p)
    : q(p.q.size() * 2),
      k_cache(p.k_cache.size() * 2),
      block_table(p.block_table.size() * 4),
      seqlens(p.seqlens.size() * 4),
      out(p.out_elems * 2),
      lse(p.ref.lse.size() * 4) {
  upload(p);
}

void DeviceProblem::upload(const MlaProblem& p) {
  q.upload(p.q);
  k_cache.upload(p.k_cache);
  block_table.upload(p.block_table);
  seqlens.upload(p.seqlens);
}

bool MlaCheck::passed() const {
  return out_nan == 0 && out_rel_l2 < out_rel_l2_tol && out_max_abs < out_max_abs_tol && padding_written == 0 &&
         lse_nan == 0 && lse_inf_mismatch == 0 && lse_out_of_tol == 0;
}

std::string MlaCheck::summary() const {
  return fmt::format(
      "{}: out rel L2 error {:.2e} (tol {:.0e}), max abs error {:.2e} (tol {:.0e}), NaN {}, padding written {}; "
      "lse max abs error {:.2e}, out of tol {}, NaN {}, +inf mismatches {}",
      config_id, out_rel_l2, out_rel_l2_tol, out_max_abs, out_max_abs_tol, out_nan, padding_written, lse_max_abs,
      lse_out_of_tol, lse_nan, lse_inf_mismatch);
}

MlaCheck run_and_check(const MlaProblem& p, DeviceProblem& d, const std::optional<KernelConfig>& pin) {
  const MlaCase& c = p.c;
  const auto& drv = jit::driver();
  StreamGuard guard;
  if (c.own_stream) FLASHMLA_CU(drv.cuStreamCreate(&guard.stream, CU_STREAM_NON_BLOCKING));
  d.out.poison();
  d.lse.poison();
  FLASHMLA_CU(drv.cuCtxSynchronize());  // uploads and poison land before any stream runs

  DecodeOptions opts;
  opts.config = pin;
  const int64_t bt_stride_arg = c.pad ? p.block_table_stride : 0;
  std::optional<DeviceBuffer> metadata_ws, decode_ws;
  if (c.own_stream) metadata_ws.emplace(metadata_workspace_size(p.shape, opts));
  const MlaMetadata md = get_mla_metadata(p.shape, d.seqlens.get<int32_t>(), d.block_table.get<int32_t>(),
                                          bt_stride_arg, guard.stream, metadata_ws ? metadata_ws->get() : nullptr, opts);
  if (c.own_stream) decode_ws.emplace(decode_workspace_size(p.shape, md));

  DecodeArgs args;
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
  mla_decode(p.shape, args, md, guard.stream, decode_ws ? decode_ws->get() : nullptr);
  FLASHMLA_CU(drv.cuCtxSynchronize());
  return check_outputs(p, d, md.config.id());
}

MlaCheck check_outputs(const MlaProblem& p, const DeviceProblem& d, const std::string& config_id) {
  const MlaCase& c = p.c;
  std::vector<uint16_t> out(p.out_elems);
  std::vector<float> lse(p.ref.lse.size());
  d.out.download(out);
  d.lse.download(lse);

  MlaCheck r;
  r.config_id = config_id;
  const bool bf16 = c.dtype == DType::bf16;
  r.out_rel_l2_tol = bf16 ? 1e-2 : 3e-3;
  r.out_max_abs_tol = bf16 ? 5e-2 : 1e-2;
  double err2 = 0, ref2 = 0;
  std::vector<char> covered(p.out_elems, 0);
  for (int bi = 0; bi < c.b; ++bi)
    for (int s = 0; s < c.s_q; ++s)
      for (int h = 0; h < c.h_q; ++h)
        for (int e = 0; e < c.latent_dim; ++e) {
          const std::size_t at = bi * p.out_strides[0] + s * p.out_strides[1] + h * p.out_strides[2] + e;
          covered[at] = 1;
          const double got = half_bits_to_float(out[at], c.dtype);
          const double want = p.ref.out[((std::size_t(bi) * c.s_q + s) * c.h_q + h) * c.latent_dim + e];
          if (std::isnan(got)) {
            ++r.out_nan;
            continue;
          }
          err2 += (got - want) * (got - want);
          ref2 += want * want;
          r.out_max_abs = std::max(r.out_max_abs, std::abs(got - want));
        }
  for (std::size_t i = 0; i < p.out_elems; ++i) r.padding_written += !covered[i] && out[i] != 0xFFFF;
  r.out_rel_l2 = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  for (std::size_t i = 0; i < lse.size(); ++i) {
    const double got = lse[i], want = p.ref.lse[i];
    if (std::isnan(got)) {
      ++r.lse_nan;
    } else if (std::isinf(want) || std::isinf(got)) {
      r.lse_inf_mismatch += got != want;
    } else {
      r.lse_max_abs = std::max(r.lse_max_abs, std::abs(got - want));
      r.lse_out_of_tol += std::abs(got - want) > std::max(2e-3, 1e-3 * std::abs(want));
    }
  }
  return r;
}

}  // namespace flashmla
