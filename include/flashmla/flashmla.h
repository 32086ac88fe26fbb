/* flashmla C ABI: status codes plus a thread-local error message.
 * Mirrors the C++ API in flashmla.hpp; every pointer argument is a device pointer
 * unless it says host. Strides are in elements; a zero stride means contiguous. */
#ifndef FLASHMLA_FLASHMLA_H
#define FLASHMLA_FLASHMLA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum flashmla_status {
  FLASHMLA_OK = 0,
  FLASHMLA_ERROR_INVALID_ARGUMENT = 1, /* bad shape, dtype, stride, pointer, config */
  FLASHMLA_ERROR_UNSUPPORTED = 2,      /* e.g. GPU older than sm_80 */
  FLASHMLA_ERROR_NO_DRIVER = 3,        /* libcuda / libnvrtc missing, or no GPU */
  FLASHMLA_ERROR_CUDA = 4,             /* a CUDA Driver API call failed */
  FLASHMLA_ERROR_COMPILE = 5,          /* NVRTC rejected a generated kernel */
  FLASHMLA_ERROR_INTERNAL = 6
} flashmla_status;

typedef enum flashmla_dtype { FLASHMLA_BF16 = 0, FLASHMLA_FP16 = 1 } flashmla_dtype;

/* Message of the last failed call on this thread ("" after a success). */
const char* flashmla_last_error(void);
const char* flashmla_version(void);

typedef struct flashmla_decode_shape {
  int b, s_q, h_q, h_kv;
  int latent_dim, rope_dim, page_size; /* 512 or 256, 64, 16/32/64/128 */
  int num_blocks, max_blocks_per_seq;
  flashmla_dtype dtype;
} flashmla_decode_shape;

typedef struct flashmla_decode_args {
  const void* q;            /* [b, s_q, h_q, d_qk] */
  int64_t q_strides[3];     /* b, s_q, h_q */
  const void* k_cache;      /* [num_blocks, page_size, h_kv, d_qk] */
  int64_t k_strides[3];     /* block, row, head */
  const int32_t* block_table; /* [b, max_blocks_per_seq] */
  int64_t block_table_stride;
  const int32_t* cache_seqlens; /* [b] */
  void* out;                /* [b, s_q, h_q, latent_dim] */
  int64_t out_strides[3];
  float* lse;               /* [b, h_q, s_q] */
  float softmax_scale;      /* 0: d_qk^-0.5 */
  int causal;
} flashmla_decode_args;

typedef struct flashmla_metadata {
  char config_id[96];   /* canonical KernelConfig id */
  int num_parts;
  int b, s_q, h_q, h_kv;
  int32_t* sched;          /* [num_parts, 8] */
  int32_t* split_offsets;  /* [b + 1] */
} flashmla_metadata;

/* config_id: NULL/"" for the dispatcher's choice, else a KernelConfig id to pin.
 * check_seqlens: nonzero to validate lengths and block ids on the host (synchronises). */
flashmla_status flashmla_metadata_workspace_size(const flashmla_decode_shape* shape, const char* config_id,
                                                 size_t* bytes);
flashmla_status flashmla_get_mla_metadata(const flashmla_decode_shape* shape, const int32_t* cache_seqlens,
                                          const int32_t* block_table, int64_t block_table_stride, void* stream,
                                          void* workspace, const char* config_id, int check_seqlens,
                                          flashmla_metadata* metadata);
flashmla_status flashmla_decode_workspace_size(const flashmla_decode_shape* shape, const flashmla_metadata* metadata,
                                               size_t* bytes);
flashmla_status flashmla_mla_decode(const flashmla_decode_shape* shape, const flashmla_decode_args* args,
                                    const flashmla_metadata* metadata, void* stream, void* workspace);
/* Loads an ahead-of-time bundle folder (flashmla compile -o DIR). *loaded (may be NULL) is 1
 * when it was loaded, 0 when it was skipped with a warning (another library version). A corrupt
 * or truncated kernel file is FLASHMLA_ERROR_INVALID_ARGUMENT naming the file. */
flashmla_status flashmla_load_bundle(const char* path, int* loaded);
/* Writes the loaded bundles (paths or embedded names), newline-separated, into buf (host). */
flashmla_status flashmla_loaded_bundles(char* buf, size_t buf_size);

/* Forgets the tuning tables read so far; the next dispatch reads configs/ and
 * $FLASHMLA_CACHE_DIR/tuning/ again (after `flashmla tune` wrote a table). */
flashmla_status flashmla_reload_tuning_tables(void);

/* Writes the id of the config the dispatcher picks for shape into buf (host). */
flashmla_status flashmla_select_config(const flashmla_decode_shape* shape, char* buf, size_t buf_size);

#ifdef __cplusplus
}
#endif

#endif /* FLASHMLA_FLASHMLA_H */
