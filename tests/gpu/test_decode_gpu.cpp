// GPU tests of flashmla::mla_decode against the fp64 CPU reference (tools/mla_problem.hpp).
//
// Every TEST_CASE is tagged [gpu]. Without a CUDA driver or GPU each one WARNs
// "skipped: <why>" and returns; ctest reports that as skipped (SKIP_REGULAR_EXPRESSION),
// so nothing else in this file may print that text. Device memory goes through the
// dlopen'ed driver table (jit/driver.hpp); the tests never link libcuda.
#include "gpu_test_support.hpp"

namespace {

using namespace flashmla::gpu_test;
using flashmla::DType;
using flashmla::KernelConfig;
namespace jit = flashmla::jit;

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
  const Problem p = flashmla::make_problem(c);
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

TEST_CASE("a decode step captured in a CUDA graph replays correctly with new lengths and data", "[gpu]") {
  SKIP_WITHOUT_GPU();
  const auto& drv = jit::driver();
  // Two problems of identical sizes: the page counts {5, 2, 16} are permuted, so the block
  // table, the cache and the buffers match while lengths, tables and values all differ.
  Case first = make_case("graph step 1", 3, 2, 16, 1, 512, 64, bf16, true, {300, 77, 1000});
  Case second = make_case("graph step 2", 3, 2, 16, 1, 512, 64, bf16, true, {1000, 300, 77});
  const Problem p1 = flashmla::make_problem(first), p2 = flashmla::make_problem(second);
  REQUIRE(p1.shape.num_blocks == p2.shape.num_blocks);
  REQUIRE(p1.shape.max_blocks_per_seq == p2.shape.max_blocks_per_seq);
  DeviceProblem d(p1);

  flashmla::DecodeOptions opts;  // pinned, so that capture and replay agree on the schedule's shape
  opts.config = flashmla::select_config(p1.shape);
  CUstream stream = nullptr;
  FLASHMLA_CU(drv.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  flashmla::DeviceBuffer metadata_ws(flashmla::metadata_workspace_size(p1.shape, opts));
  flashmla::DecodeArgs args;
  args.q = d.q.get(), args.k_cache = d.k_cache.get(), args.block_table = d.block_table.get<int32_t>();
  args.cache_seqlens = d.seqlens.get<int32_t>(), args.out = d.out.get(), args.lse = d.lse.get<float>();
  args.causal = true;
  // The decode workspace size depends only on the shape and the schedule's partition count.
  const flashmla::MlaMetadata eager = flashmla::get_mla_metadata(p1.shape, args.cache_seqlens, args.block_table, 0,
                                                                 stream, metadata_ws.get(), opts);
  flashmla::DeviceBuffer decode_ws(flashmla::decode_workspace_size(p1.shape, eager));
  FLASHMLA_CU(drv.cuStreamSynchronize(stream));

  CUgraph graph = nullptr;
  CUgraphExec exec = nullptr;
  FLASHMLA_CU(drv.cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL));
  const flashmla::MlaMetadata md = flashmla::get_mla_metadata(p1.shape, args.cache_seqlens, args.block_table, 0,
                                                              stream, metadata_ws.get(), opts);
  flashmla::mla_decode(p1.shape, args, md, stream, decode_ws.get());
  FLASHMLA_CU(drv.cuStreamEndCapture(stream, &graph));
  FLASHMLA_CU(drv.cuGraphInstantiate(&exec, graph, 0));

  for (const Problem* p : {&p1, &p2, &p1}) {
    d.upload(*p);
    d.out.poison();
    d.lse.poison();
    FLASHMLA_CU(drv.cuCtxSynchronize());
    FLASHMLA_CU(drv.cuGraphLaunch(exec, stream));
    FLASHMLA_CU(drv.cuStreamSynchronize(stream));
    const flashmla::MlaCheck r = flashmla::check_outputs(*p, d, md.config.id());
    INFO(p->c.describe() << "\n" << r.summary());
    CHECK(r.passed());
  }
  FLASHMLA_CU(drv.cuGraphExecDestroy(exec));
  FLASHMLA_CU(drv.cuGraphDestroy(graph));
  FLASHMLA_CU(drv.cuStreamDestroy(stream));
}
