#include "codegen/codegen.hpp"

#include <fmt/format.h>

namespace flashmla::codegen {

std::string unit_name(const KernelConfig& config) { return config.id() + ".cu"; }

namespace {

// A family whose traits take only the page size and element type (decode_seesaw, decode_pair):
// its header, traits and decode entry.
std::string paged_part(const KernelConfig& c, const char* elem, const char* family, const char* traits) {
  return fmt::format(
      R"(#include "flashmla/{family}.cuh"

using Traits = flashmla::{traits}</*page_size*/ {page}, {elem}>;
static_assert(sizeof(Traits::SharedPlan) == {smem}, "host and device shared-memory plans disagree");

extern "C" __global__ void __launch_bounds__(Traits::kThreads, 1)
{decode}(const __grid_constant__ flashmla::DecodeParams params) {{
  flashmla::{family}_kernel<Traits>(params);
}}
)",
      fmt::arg("family", family), fmt::arg("traits", traits),
      fmt::arg("page", c.page_size), fmt::arg("elem", elem), fmt::arg("smem", c.shared_bytes()),
      fmt::arg("decode", kDecodeSymbol));
}

// The family's traits and decode entry; combine and metadata are shared by every family.
std::string decode_part(const KernelConfig& c, const char* elem) {
  if (c.family == Family::decode_pair) return paged_part(c, elem, "decode_pair", "DecodePairTraits");
  if (c.family == Family::decode_seesaw) return paged_part(c, elem, "decode_seesaw", "DecodeSeesawTraits");
  if (c.family == Family::decode_wgmma)
    return fmt::format(
        R"(#include "flashmla/decode_wgmma.cuh"

using Traits = flashmla::DecodeWgmmaTraits</*num_stages*/ {ns}, /*page_size*/ {page}, {elem}>;
static_assert(sizeof(Traits::SharedPlan) == {smem}, "host and device shared-memory plans disagree");

extern "C" __global__ void __launch_bounds__(Traits::kThreads, 1)
{decode}(const __grid_constant__ flashmla::DecodeParams params) {{
  flashmla::decode_wgmma_kernel<Traits>(params);
}}
)",
        fmt::arg("ns", c.num_stages), fmt::arg("page", c.page_size), fmt::arg("elem", elem),
        fmt::arg("smem", c.shared_bytes()), fmt::arg("decode", kDecodeSymbol));
  return fmt::format(
      R"(#include "flashmla/decode_mma.cuh"

using Traits = flashmla::DecodeMmaTraits</*block_size_q*/ {bq}, /*block_size_k*/ {bk}, /*num_warps*/ {nw},
                                         /*num_stages*/ {ns}, /*latent_dim*/ {latent}, /*rope_dim*/ {rope},
                                         /*page_size*/ {page}, {elem}>;
static_assert(sizeof(Traits::SharedPlan) == {smem}, "host and device shared-memory plans disagree");

extern "C" __global__ void __launch_bounds__(Traits::kThreads, 1)
{decode}(const __grid_constant__ flashmla::DecodeParams params) {{
  flashmla::decode_mma_kernel<Traits>(params);
}}
)",
      fmt::arg("bq", c.block_size_q), fmt::arg("bk", c.block_size_k), fmt::arg("nw", c.num_warps),
      fmt::arg("ns", c.num_stages), fmt::arg("latent", c.latent_dim), fmt::arg("rope", c.rope_dim),
      fmt::arg("page", c.page_size), fmt::arg("elem", elem), fmt::arg("smem", c.shared_bytes()),
      fmt::arg("decode", kDecodeSymbol));
}

}  // namespace

std::string render(const KernelConfig& c) {
  c.validate();
  const char* elem = c.dtype == DType::bf16 ? "flashmla::dev::Elem::bf16" : "flashmla::dev::Elem::fp16";
  return fmt::format(
      R"(// flashmla generated unit: {id}
#include "flashmla/combine.cuh"
#include "flashmla/metadata.cuh"
{decode_part}
extern "C" __global__ void __launch_bounds__({combine_threads}, {combine_min_ctas})
{combine}(const __grid_constant__ flashmla::CombineParams params) {{
  flashmla::combine_kernel<{latent}, {elem}, {combine_threads}, {combine_max_splits}, /*partial16*/ {partial16}>(params);
}}

extern "C" __global__ void __launch_bounds__({metadata_threads})
{metadata}(const __grid_constant__ flashmla::MetadataParams params) {{
  extern __shared__ int tiles_per_batch[];
  flashmla::metadata_kernel(params, tiles_per_batch);
}}
)",
      fmt::arg("id", c.id()), fmt::arg("decode_part", decode_part(c, elem)), fmt::arg("latent", c.latent_dim),
      fmt::arg("elem", elem), fmt::arg("combine", kCombineSymbol), fmt::arg("metadata", kMetadataSymbol),
      fmt::arg("combine_threads", kCombineThreads), fmt::arg("combine_max_splits", kCombineMaxSplits),
      fmt::arg("partial16", c.family == Family::decode_wgmma ? "FLASHMLA_WGMMA_PARTIAL16 != 0" : "false"),
      fmt::arg("combine_min_ctas", kCombineMinCtasPerSm), fmt::arg("metadata_threads", kMetadataThreads));
}

}  // namespace flashmla::codegen
