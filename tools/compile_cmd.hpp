// `flashmla compile` (ahead-of-time bundles) and `flashmla first-call` (start-up latency).
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace flashmla::cli {

struct CompileOptions {
  std::vector<std::string> archs{"sm_90a", "sm_80"};
  std::string configs_file;  // JSON: ids, config objects, {"configs": [...]} or {"entries": [{"config": ...}]}
  bool all = false;          // every valid config of every problem class
  std::string out;           // bundle folder
  std::string emit_cpp;      // also write this C++ source embedding the bundle
  std::string name = "flashmla_bundle";
  int jobs = 0;              // parallel compiles (0: one per core)
};

void add_compile_options(CLI::App* app, CompileOptions& options);
int cmd_compile(const CompileOptions& options);
// Times this process's first decode (metadata + decode + sync) and prints one JSON line.
int cmd_first_call();

}  // namespace flashmla::cli
