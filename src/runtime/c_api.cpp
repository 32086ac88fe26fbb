// The C ABI over the C++ API: exceptions become status codes and a thread-local message.
#include "flashmla/flashmla.h"

#include <cstring>
#include <string>

#include "flashmla/bundle.hpp"
#include "flashmla/flashmla.hpp"

namespace {

thread_local std::string g_last_error;

template <class F>
flashmla_status guarded(F&& body) {
  try {
    body();
    g_last_error.clear();
    return FLASHMLA_OK;
  } catch (const flashmla::InvalidArgument& e) {
    g_last_error = e.what();
    return FLASHMLA_ERROR_INVALID_ARGUMENT;
  } catch (const flashmla::Unsupported& e) {
    g_last_error = e.what();
    return FLASHMLA_ERROR_UNSUPPORTED;
  } catch (const flashmla::NoDriver& e) {
    g_last_error = e.what();
    return FLASHMLA_ERROR_NO_DRIVER;
  } catch (const flashmla::CudaError& e) {
    g_last_error = e.what();
    return FLASHMLA_ERROR_CUDA;
  } catch (const flashmla::CompileError& e) {
    g_last_error = e.what();
    return FLASHMLA_ERROR_COMPILE;
  } catch (const std::exception& e) {
    g_last_error = e.what();
    return FLASHMLA_ERROR_INTERNAL;
  } catch (...) {
    g_last_error = "unknown exception";
    return FLASHMLA_ERROR_INTERNAL;
  }
}

void require(const void* p, const char* name) {
  if (!p) throw flashmla::InvalidArgument(std::string(name) + " is a null pointer");
}

flashmla::DecodeShape to_cpp(const flashmla_decode_shape* s) {
  require(s, "shape");
  flashmla::DecodeShape out;
  out.b = s->b, out.s_q = s->s_q, out.h_q = s->h_q, out.h_kv = s->h_kv;
  out.latent_dim = s->latent_dim, out.rope_dim = s->rope_dim, out.page_size = s->page_size;
  out.num_blocks = s->num_blocks, out.max_blocks_per_seq = s->max_blocks_per_seq;
  if (s->dtype != FLASHMLA_BF16 && s->dtype != FLASHMLA_FP16)
    throw flashmla::InvalidArgument("dtype = " + std::to_string(int(s->dtype)) + "; expected FLASHMLA_BF16 or FLASHMLA_FP16");
  out.dtype = static_cast<flashmla::DType>(s->dtype);
  return out;
}

flashmla::DecodeOptions options(const char* config_id, int check_seqlens) {
  flashmla::DecodeOptions o;
  if (config_id && *config_id) o.config = flashmla::KernelConfig::parse(config_id);
  o.check_seqlens = check_seqlens != 0;
  return o;
}

flashmla::MlaMetadata to_cpp(const flashmla_metadata* m) {
  require(m, "metadata");
  flashmla::MlaMetadata out;
  out.config = flashmla::KernelConfig::parse(m->config_id);
  out.num_parts = m->num_parts;
  out.b = m->b, out.s_q = m->s_q, out.h_q = m->h_q, out.h_kv = m->h_kv;
  out.sched = m->sched, out.split_offsets = m->split_offsets;
  return out;
}

}  // namespace

extern "C" {

const char* flashmla_last_error(void) { return g_last_error.c_str(); }
const char* flashmla_version(void) { return flashmla::version(); }

flashmla_status flashmla_metadata_workspace_size(const flashmla_decode_shape* shape, const char* config_id,
                                                 size_t* bytes) {
  return guarded([&] {
    require(bytes, "bytes");
    *bytes = flashmla::metadata_workspace_size(to_cpp(shape), options(config_id, 0));
  });
}

flashmla_status flashmla_get_mla_metadata(const flashmla_decode_shape* shape, const int32_t* cache_seqlens,
                                          const int32_t* block_table, int64_t block_table_stride, void* stream,
                                          void* workspace, const char* config_id, int check_seqlens,
                                          flashmla_metadata* metadata) {
  return guarded([&] {
    require(metadata, "metadata");
    const auto md = flashmla::get_mla_metadata(to_cpp(shape), cache_seqlens, block_table, block_table_stride,
                                               static_cast<flashmla::Stream>(stream), workspace,
                                               options(config_id, check_seqlens));
    const std::string id = md.config.id();
    std::memset(metadata, 0, sizeof(*metadata));
    std::strncpy(metadata->config_id, id.c_str(), sizeof(metadata->config_id) - 1);
    metadata->num_parts = md.num_parts;
    metadata->b = md.b, metadata->s_q = md.s_q, metadata->h_q = md.h_q, metadata->h_kv = md.h_kv;
    metadata->sched = md.sched, metadata->split_offsets = md.split_offsets;
  });
}

flashmla_status flashmla_decode_workspace_size(const flashmla_decode_shape* shape, const flashmla_metadata* metadata,
                                               size_t* bytes) {
  return guarded([&] {
    require(bytes, "bytes");
    *bytes = flashmla::decode_workspace_size(to_cpp(shape), to_cpp(metadata));
  });
}

flashmla_status flashmla_mla_decode(const flashmla_decode_shape* shape, const flashmla_decode_args* args,
                                    const flashmla_metadata* metadata, void* stream, void* workspace) {
  return guarded([&] {
    require(args, "args");
    flashmla::DecodeArgs a;
    a.q = args->q;
    a.k_cache = args->k_cache;
    a.block_table = args->block_table;
    a.block_table_stride = args->block_table_stride;
    a.cache_seqlens = args->cache_seqlens;
    a.out = args->out;
    a.lse = args->lse;
    for (int i = 0; i < 3; ++i) {
      a.q_strides[i] = args->q_strides[i];
      a.k_strides[i] = args->k_strides[i];
      a.out_strides[i] = args->out_strides[i];
    }
    a.softmax_scale = args->softmax_scale;
    a.causal = args->causal != 0;
    flashmla::mla_decode(to_cpp(shape), a, to_cpp(metadata), static_cast<flashmla::Stream>(stream), workspace);
  });
}

flashmla_status flashmla_load_bundle(const char* path, int* loaded) {
  return guarded([&] {
    require(path, "path");
    bool ok = false;
    try {
      ok = flashmla::load_bundle(path);
    } catch (const flashmla::InvalidArgument&) {
      throw;
    } catch (const flashmla::Error& e) {  // corrupt, truncated, missing: the caller's input
      throw flashmla::InvalidArgument(e.what());
    }
    if (loaded) *loaded = ok ? 1 : 0;
  });
}

flashmla_status flashmla_loaded_bundles(char* buf, size_t buf_size) {
  return guarded([&] {
    require(buf, "buf");
    std::string list;
    for (const auto& b : flashmla::loaded_bundles()) list += (list.empty() ? "" : "\n") + b;
    if (buf_size < list.size() + 1)
      throw flashmla::InvalidArgument("buf_size " + std::to_string(buf_size) + " < " + std::to_string(list.size() + 1));
    std::memcpy(buf, list.c_str(), list.size() + 1);
  });
}

flashmla_status flashmla_reload_tuning_tables(void) {
  return guarded([] { flashmla::reload_tuning_tables(); });
}

flashmla_status flashmla_select_config(const flashmla_decode_shape* shape, char* buf, size_t buf_size) {
  return guarded([&] {
    require(buf, "buf");
    const std::string id = flashmla::select_config(to_cpp(shape)).id();
    if (buf_size < id.size() + 1)
      throw flashmla::InvalidArgument("buf_size " + std::to_string(buf_size) + " < " + std::to_string(id.size() + 1));
    std::memcpy(buf, id.c_str(), id.size() + 1);
  });
}

}  // extern "C"
