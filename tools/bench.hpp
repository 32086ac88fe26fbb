// `flashmla bench` and `flashmla demo`: timed decode problems on the device.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace flashmla::cli {

struct BenchOptions {
  int b = 128, s_q = 1, h_q = 128, h_kv = 1, s_k = 4096, page_size = 64, latent_dim = 512;
  std::string dtype = "bf16";
  bool preset = false;  // the PERF.md rows instead of one problem
  int runs = 30;        // timed runs per problem (median reported)
  std::string config;   // pin a config id
  std::string json;     // write the record here
  std::string commit = "unknown";
  // Measured ceilings the results are divided by (0: the built-in figure for the GPU model,
  // if there is one; see measured_ceilings in bench.cpp).
  double ceiling_gbs = 0, ceiling_tflops = 0;
};

// Memory and matrix-product ceilings measured on one GPU model.
struct Ceilings {
  double gbs = 0, tflops = 0;  // 0: unknown
};
// The figures measured on the GPU machine for a device name (PERF.md), else unknown.
Ceilings measured_ceilings(const std::string& device_name);

void add_bench_options(CLI::App* app, BenchOptions& options);
int cmd_bench(const BenchOptions& options);
int cmd_demo();

}  // namespace flashmla::cli
