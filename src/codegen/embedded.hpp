// The device templates (templates/flashmla/*.cuh), embedded at build time.
#pragma once

#include <span>
#include <string_view>

namespace flashmla::codegen {

struct EmbeddedFile {
  std::string_view name;    // include name, e.g. "flashmla/decode_mma.cuh"
  std::string_view source;  // file contents
};

std::span<const EmbeddedFile> embedded_files();
// The shipped tuning tables (configs/*.json), embedded at build time; may be empty.
std::span<const EmbeddedFile> embedded_tables();

}  // namespace flashmla::codegen
