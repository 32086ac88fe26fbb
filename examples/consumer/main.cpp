// Links the installed flashmla, picks a config and, on a GPU, runs one decode step's
// metadata; without a GPU it says so. Exit code 0 in both cases.
#include <flashmla/bundle.hpp>
#include <flashmla/flashmla.h>
#include <flashmla/flashmla.hpp>

#include <cstdio>

int main() {
  std::printf("flashmla %s\n", flashmla::version());
  const flashmla::KernelConfig config = flashmla::KernelConfig::parse("decode_mma-bf16-l512-r64-p64-q64-k32-w8-s3-sm_90a");
  std::printf("config %s: %s\n", config.id().c_str(), config.invalid_reason() ? "invalid" : "valid");
  std::printf("bundles loaded: %zu\n", flashmla::loaded_bundles().size());
  flashmla_decode_shape shape{1, 1, 16, 1, 512, 64, 64, 1, 1, FLASHMLA_BF16};
  char id[128];
  if (flashmla_select_config(&shape, id, sizeof(id)) == FLASHMLA_OK)
    std::printf("dispatcher picks %s\n", id);
  else
    std::printf("no GPU path: %s\n", flashmla_last_error());
  return 0;
}
