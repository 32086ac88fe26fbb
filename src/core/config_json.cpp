#include "core/config_json.hpp"

#include <fmt/format.h>

#include "flashmla/error.hpp"

namespace flashmla {

nlohmann::json to_json(const KernelConfig& c) {
  return {{"family", std::string(to_string(c.family))},
          {"dtype", std::string(to_string(c.dtype))},
          {"block_size_q", c.block_size_q},
          {"block_size_k", c.block_size_k},
          {"num_warps", c.num_warps},
          {"num_stages", c.num_stages},
          {"latent_dim", c.latent_dim},
          {"rope_dim", c.rope_dim},
          {"page_size", c.page_size},
          {"arch", c.arch.name()}};
}

KernelConfig config_from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw InvalidArgument(fmt::format("kernel config JSON must be an object, got {}", j.dump()));
  auto get_int = [&](const char* key) {
    if (!j.contains(key) || !j[key].is_number_integer())
      throw InvalidArgument(fmt::format("kernel config JSON {}: field '{}' missing or not an integer", j.dump(), key));
    return j[key].get<int>();
  };
  auto get_str = [&](const char* key) {
    if (!j.contains(key) || !j[key].is_string())
      throw InvalidArgument(fmt::format("kernel config JSON {}: field '{}' missing or not a string", j.dump(), key));
    return j[key].get<std::string>();
  };
  KernelConfig c;
  c.family = parse_family(get_str("family"), "kernel config JSON");
  c.dtype = parse_dtype(get_str("dtype"));
  c.block_size_q = get_int("block_size_q");
  c.block_size_k = get_int("block_size_k");
  c.num_warps = get_int("num_warps");
  c.num_stages = get_int("num_stages");
  c.latent_dim = get_int("latent_dim");
  c.rope_dim = get_int("rope_dim");
  c.page_size = get_int("page_size");
  c.arch = Arch::parse(get_str("arch"));
  return c;
}

}  // namespace flashmla
