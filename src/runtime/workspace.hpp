// Library-owned device buffers, one per (context, stream, purpose), grown on demand and
// reused. Growing synchronises the stream (the old buffer may still be in use) and is
// refused while the stream is being captured into a graph.
#pragma once

#include <cuda.h>

#include <cstddef>

namespace flashmla::runtime {

enum class Purpose { metadata, partials };

void* library_workspace(CUstream stream, Purpose purpose, std::size_t bytes);

}  // namespace flashmla::runtime
