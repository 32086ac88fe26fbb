#include "tools/bench.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <vector>

#include "core/utc.hpp"
#include "flashmla/flashmla.hpp"
#include "jit/driver.hpp"
#include "jit/kernel_cache.hpp"
#include "runtime/dispatch.hpp"
#include "tools/device_buffer.hpp"
#include "tools/decode_timer.hpp"

namespace flashmla::cli {
namespace {

struct Row {
  int b, s_q, h_q, s_k;
};
// PERF.md's anchor rows (DeepSeek FlashMLA measured on the same H100).
constexpr Row kPresetRows[] = {{128, 1, 16, 4096}, {128, 1, 16, 16384}, {128, 1, 64, 8192}, {128, 1, 128, 4096},
                               {128, 1, 128, 16384}, {128, 2, 128, 4096}, {128, 2, 128, 8192}, {1, 1, 128, 65536},
                               {4, 1, 128, 4096}, {8, 1, 128, 8192}, {32, 1, 16, 4096}};

}  // namespace

Ceilings measured_ceilings(const std::string& device_name) {
  // ../shared/PERF.md, measured on the GPU machine: device-to-device copy (bytes read +
  // written) and a bf16 8192^3 matrix product in torch.
  if (device_name == "NVIDIA H100 80GB HBM3") return {3000, 780};
  return {};
}

void add_bench_options(CLI::App* app, BenchOptions& o) {
  app->add_option("--batch,-b", o.b, "batch size");
  app->add_option("--s-q", o.s_q, "query tokens per sequence (causal when > 1)");
  app->add_option("--h-q", o.h_q, "query heads");
  app->add_option("--h-kv", o.h_kv, "latent KV heads");
  app->add_option("--s-k", o.s_k, "context length of every sequence");
  app->add_option("--page-size", o.page_size, "KV cache page size");
  app->add_option("--latent-dim", o.latent_dim, "512 or 256");
  app->add_option("--dtype", o.dtype, "bf16 or fp16");
  app->add_flag("--preset", o.preset, "run the PERF.md rows instead of one problem");
  app->add_option("--runs", o.runs, "timed runs per problem (median reported)")->check(CLI::Range(1, 100000));
  app->add_option("--config", o.config, "pin a config id");
  app->add_option("--json", o.json, "write the record to this file");
  app->add_option("--commit", o.commit, "commit recorded in the JSON");
  app->add_option("--ceiling-gbs", o.ceiling_gbs,
                  "memory ceiling in GB/s for the %mem column (default: measured figure for known GPUs)");
  app->add_option("--ceiling-tflops", o.ceiling_tflops,
                  "matrix-product ceiling in TFLOP/s for the %mma column (default: measured figure for known GPUs)");
}

int cmd_bench(const BenchOptions& o) {
  jit::driver();  // throws NoDriver, naming why, before anything is allocated
  jit::ensure_context();
  const auto info = jit::current_device_info();
  std::vector<Row> rows;
  if (o.preset)
    rows.assign(std::begin(kPresetRows), std::end(kPresetRows));
  else
    rows.push_back({o.b, o.s_q, o.h_q, o.s_k});
  const DType dtype = parse_dtype(o.dtype);
  const int d_qk = o.latent_dim + 64;

  // One cache large enough for every row, filled once; each row gets its own random block table.
  std::size_t max_blocks = 0;
  for (const Row& r : rows) max_blocks = std::max<std::size_t>(max_blocks, std::size_t(r.b) * ((r.s_k + o.page_size - 1) / o.page_size));
  const std::size_t cache_elems = max_blocks * o.page_size * o.h_kv * d_qk;
  DeviceBuffer cache(cache_elems * 2);
  fill_random(cache, cache_elems, dtype, 1);
  DeviceBuffer flush(kL2FlushBytes);  // written before each timed run to evict L2

  Ceilings ceil = measured_ceilings(info.name);
  if (o.ceiling_gbs > 0) ceil.gbs = o.ceiling_gbs;
  if (o.ceiling_tflops > 0) ceil.tflops = o.ceiling_tflops;
  auto fraction = [](double v, double c) { return c > 0 ? fmt::format("{:.0f}%", 100 * v / c) : std::string("-"); };

  nlohmann::json record = {{"gpu", info.name},
                           {"date", utc_date()},
                           {"commit", o.commit},
                           {"ceilings", {{"gbs", ceil.gbs}, {"tflops", ceil.tflops}}},
                           {"rows", nlohmann::json::array()}};
  fmt::print("{:>4} {:>4} {:>4} {:>6} {:>10} {:>9} {:>9} {:>5} {:>5}  {}\n", "b", "s_q", "h_q", "s_k", "us", "TFLOP/s",
             "GB/s", "%mma", "%mem", "config");
  for (const Row& r : rows) {
    DecodeShape shape;
    shape.b = r.b, shape.s_q = r.s_q, shape.h_q = r.h_q, shape.h_kv = o.h_kv;
    shape.latent_dim = o.latent_dim, shape.page_size = o.page_size, shape.dtype = dtype;
    shape.max_blocks_per_seq = (r.s_k + o.page_size - 1) / o.page_size;
    shape.num_blocks = static_cast<int>(max_blocks);
    std::vector<int32_t> table(std::size_t(r.b) * shape.max_blocks_per_seq);
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), std::mt19937(r.b * 7919 + r.s_k));
    std::vector<int32_t> lens(r.b, r.s_k);
    DeviceBuffer d_table(table.size() * 4), d_lens(lens.size() * 4);
    d_table.upload(table.data(), table.size() * 4);
    d_lens.upload(lens.data(), lens.size() * 4);
    const std::size_t q_elems = std::size_t(r.b) * r.s_q * r.h_q * d_qk;
    DeviceBuffer q(q_elems * 2), out(std::size_t(r.b) * r.s_q * r.h_q * o.latent_dim * 2),
        lse(std::size_t(r.b) * r.s_q * r.h_q * 4);
    fill_random(q, q_elems, dtype, 2);

    DecodeOptions opts;
    if (!o.config.empty()) opts.config = KernelConfig::parse(o.config);
    const MlaMetadata md = get_mla_metadata(shape, d_lens.get<int32_t>(), d_table.get<int32_t>(), 0, nullptr, nullptr, opts);
    DecodeArgs args;
    args.q = q.get(), args.k_cache = cache.get(), args.block_table = d_table.get<int32_t>();
    args.cache_seqlens = d_lens.get<int32_t>(), args.out = out.get(), args.lse = lse.get<float>();
    args.causal = r.s_q > 1;
    const autotune::Timing t = time_decode(shape, args, md, o.runs, flush);
    const double median = t.median_us;
    // PERF.md formulas.
    const double sum_sk = double(r.b) * r.s_k;
    const double flops = 2.0 * r.s_q * r.h_q * (d_qk + o.latent_dim) * sum_sk;
    const double bytes = sum_sk * o.h_kv * d_qk * 2 + double(r.b) * r.s_q * r.h_q * (d_qk + o.latent_dim) * 2;
    const double tflops = flops / (median * 1e-6) / 1e12, gbs = bytes / (median * 1e-6) / 1e9;
    fmt::print("{:>4} {:>4} {:>4} {:>6} {:>10.1f} {:>9.1f} {:>9.0f} {:>5} {:>5}  {}\n", r.b, r.s_q, r.h_q, r.s_k, median,
               tflops, gbs, fraction(tflops, ceil.tflops), fraction(gbs, ceil.gbs), md.config.id());
    nlohmann::json row = {{"b", r.b},         {"s_q", r.s_q},       {"h_q", r.h_q},
                          {"s_k", r.s_k},     {"us", median},       {"us_p20", t.p20_us},
                          {"us_p80", t.p80_us}, {"tflops", tflops},   {"gbs", gbs},
                          {"kernel", std::string(to_string(md.config.family))}, {"config", md.config.id()}};
    if (ceil.tflops > 0) row["frac_tflops"] = tflops / ceil.tflops;
    if (ceil.gbs > 0) row["frac_gbs"] = gbs / ceil.gbs;
    record["rows"].push_back(row);
  }
  if (!o.json.empty()) {
    std::ofstream(o.json) << record.dump(2) << "\n";
    fmt::print("wrote {}\n", o.json);
  }
  return 0;
}

}  // namespace flashmla::cli
