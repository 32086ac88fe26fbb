#include "tools/mla_problem.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <thread>

#include "tools/device_buffer.hpp"
#include "tools/half.hpp"

namespace flashmla {
namespace {

struct Reference {
  std::vector<double> out;  // [b, s_q, h_q, latent]
  std::vector<double> lse;  // [b, h_q, s_q]; +inf when no key is visible
};

// out[b,s,h,:] = softmax(q.k * scale) v over the visible keys, in fp64.
Reference reference(const MlaProblemSpec& p, const std::vector<float>& q, const std::vector<float>& cache,
                    const std::vector<int32_t>& table, int max_blocks, double scale) {
  const int d_qk = p.latent_dim + 64, hpk = p.h_q / p.h_kv;
  Reference ref;
  ref.out.assign(std::size_t(p.b) * p.s_q * p.h_q * p.latent_dim, 0.0);
  ref.lse.assign(std::size_t(p.b) * p.h_q * p.s_q, std::numeric_limits<double>::infinity());
  auto row_of = [&](int bi, int t, int g) -> const float* {
    const int block = table[std::size_t(bi) * max_blocks + t / p.page_size];
    return &cache[((std::size_t(block) * p.page_size + t % p.page_size) * p.h_kv + g) * d_qk];
  };
  auto work = [&](int task) {
    const int bi = task / p.h_q, h = task % p.h_q, g = h / hpk;
    const int len = p.seqlens[bi];
    std::vector<double> score(len);
    for (int s = 0; s < p.s_q; ++s) {
      const int visible = p.causal ? std::min(len, std::max(0, len - p.s_q + s + 1)) : len;
      if (visible == 0) continue;
      const float* qr = &q[((std::size_t(bi) * p.s_q + s) * p.h_q + h) * d_qk];
      double mx = -std::numeric_limits<double>::infinity();
      for (int t = 0; t < visible; ++t) {
        const float* kr = row_of(bi, t, g);
        double dot = 0;
        for (int d = 0; d < d_qk; ++d) dot += double(qr[d]) * kr[d];
        score[t] = dot * scale;
        mx = std::max(mx, score[t]);
      }
      double sum = 0;
      for (int t = 0; t < visible; ++t) sum += (score[t] = std::exp(score[t] - mx));
      double* o = &ref.out[((std::size_t(bi) * p.s_q + s) * p.h_q + h) * p.latent_dim];
      for (int t = 0; t < visible; ++t) {
        const float* vr = row_of(bi, t, g);
        const double w = score[t] / sum;
        for (int d = 0; d < p.latent_dim; ++d) o[d] += w * vr[d];
      }
      ref.lse[(std::size_t(bi) * p.h_q + h) * p.s_q + s] = mx + std::log(sum);
    }
  };
  const int tasks = p.b * p.h_q;
  const int threads = std::max(1u, std::min(std::thread::hardware_concurrency(), 32u));
  std::vector<std::thread> pool;
  for (int w = 0; w < threads; ++w)
    pool.emplace_back([&, w] {
      for (int task = w; task < tasks; task += threads) work(task);
    });
  for (auto& t : pool) t.join();
  return ref;
}

}  // namespace

ProblemCheck run_and_check(const MlaProblemSpec& spec, uint64_t seed) {
  MlaProblemSpec p = spec;
  if (p.seqlens.empty()) p.seqlens.assign(p.b, 256);
  const int d_qk = p.latent_dim + 64;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  auto rounded = [&](float x) { return half_bits_to_float(float_to_half_bits(x, p.dtype), p.dtype); };

  const int max_len = std::max(1, *std::max_element(p.seqlens.begin(), p.seqlens.end()));
  const int max_blocks = (max_len + p.page_size - 1) / p.page_size;
  const int num_blocks = p.b * max_blocks + 3;  // spare blocks hold random data nobody may read
  std::vector<int32_t> table(std::size_t(p.b) * max_blocks);
  std::vector<int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::copy(perm.begin(), perm.begin() + table.size(), table.begin());

  // q with an optional gap between heads; the reference reads the dense copy.
  const int64_t q_head_stride = d_qk + p.q_head_pad;
  std::vector<float> q(std::size_t(p.b) * p.s_q * p.h_q * d_qk);
  std::vector<uint16_t> q_bits(std::size_t(p.b) * p.s_q * p.h_q * q_head_stride);
  for (std::size_t row = 0; row < q.size() / d_qk; ++row)
    for (int d = 0; d < q_head_stride; ++d) {
      const float x = uni(rng);
      q_bits[row * q_head_stride + d] = float_to_half_bits(x, p.dtype);
      if (d < d_qk) q[row * d_qk + d] = rounded(x);
    }
  std::vector<float> cache(std::size_t(num_blocks) * p.page_size * p.h_kv * d_qk);
  std::vector<uint16_t> cache_bits(cache.size());
  for (std::size_t i = 0; i < cache.size(); ++i) {
    const float x = uni(rng);
    cache_bits[i] = float_to_half_bits(x, p.dtype);
    cache[i] = rounded(x);
  }

  DecodeShape shape;
  shape.b = p.b, shape.s_q = p.s_q, shape.h_q = p.h_q, shape.h_kv = p.h_kv;
  shape.latent_dim = p.latent_dim, shape.page_size = p.page_size, shape.dtype = p.dtype;
  shape.num_blocks = num_blocks, shape.max_blocks_per_seq = max_blocks;

  DeviceBuffer d_q(q_bits.size() * 2), d_cache(cache_bits.size() * 2), d_table(table.size() * 4),
      d_lens(p.b * 4);
  d_q.upload(q_bits.data(), q_bits.size() * 2);
  d_cache.upload(cache_bits.data(), cache_bits.size() * 2);
  d_table.upload(table.data(), table.size() * 4);
  std::vector<int32_t> lens(p.seqlens.begin(), p.seqlens.end());
  d_lens.upload(lens.data(), lens.size() * 4);
  const int64_t o_head_stride = p.latent_dim + p.out_head_pad;
  const std::size_t out_elems = std::size_t(p.b) * p.s_q * p.h_q * o_head_stride;
  DeviceBuffer d_out(out_elems * 2), d_lse(std::size_t(p.b) * p.h_q * p.s_q * 4);
  d_out.fill_bytes(0xff);  // NaN in bf16 and fp16: unwritten elements cannot pass
  d_lse.fill_bytes(0xff);

  DecodeOptions opts;
  opts.config = p.config;
  const MlaMetadata md = get_mla_metadata(shape, d_lens.as<int32_t>(), d_table.as<int32_t>(), 0, nullptr, nullptr, opts);
  DecodeArgs args;
  args.q = d_q.get();
  args.q_strides = {int64_t(p.s_q) * p.h_q * q_head_stride, int64_t(p.h_q) * q_head_stride, q_head_stride};
  args.k_cache = d_cache.get();
  args.block_table = d_table.as<int32_t>();
  args.cache_seqlens = d_lens.as<int32_t>();
  args.out = d_out.get();
  args.out_strides = {int64_t(p.s_q) * p.h_q * o_head_stride, int64_t(p.h_q) * o_head_stride, o_head_stride};
  args.lse = d_lse.as<float>();
  args.softmax_scale = p.softmax_scale;
  args.causal = p.causal;
  mla_decode(shape, args, md, nullptr);
  FLASHMLA_CU(jit::driver().cuCtxSynchronize());

  std::vector<uint16_t> out_bits(out_elems);
  std::vector<float> lse(std::size_t(p.b) * p.h_q * p.s_q);
  d_out.download(out_bits.data(), out_bits.size() * 2);
  d_lse.download(lse.data(), lse.size() * 4);

  const double scale = p.softmax_scale > 0 ? p.softmax_scale : 1.0 / std::sqrt(double(d_qk));
  const Reference ref = reference(p, q, cache, table, max_blocks, scale);

  ProblemCheck r;
  r.config_id = md.config.id();
  double err2 = 0, ref2 = 0;
  for (std::size_t row = 0; row < ref.out.size() / p.latent_dim; ++row)
    for (int d = 0; d < p.latent_dim; ++d) {
      const double want = ref.out[row * p.latent_dim + d];
      const double got = half_bits_to_float(out_bits[row * o_head_stride + d], p.dtype);
      if (!std::isfinite(got)) {
        ++r.bad_values;
        continue;
      }
      err2 += (got - want) * (got - want);
      ref2 += want * want;
      r.out_max_error = std::max(r.out_max_error, std::abs(got - want));
    }
  r.out_rel_error = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  for (std::size_t i = 0; i < lse.size(); ++i) {
    const double want = ref.lse[i], got = lse[i];
    if (std::isinf(want)) {
      if (!(std::isinf(got) && got > 0)) ++r.bad_values;
    } else if (!std::isfinite(got)) {
      ++r.bad_values;
    } else {
      r.lse_max_error = std::max(r.lse_max_error, std::abs(got - want) / std::max(1.0, std::abs(want)));
    }
  }
  r.passed = r.bad_values == 0 && r.out_rel_error < ProblemCheck::out_rel_tolerance(p.dtype) &&
             r.out_max_error < ProblemCheck::out_max_tolerance(p.dtype) && r.lse_max_error < ProblemCheck::kLseTolerance;
  return r;
}

}  // namespace flashmla
