"""flashmla: JIT-compiled Multi-head Latent Attention decode for NVIDIA GPUs, from Python.

FlashMLA's API (also importable as `flash_mla`):
    get_mla_metadata(cache_seqlens, num_q_tokens_per_head_k, num_heads_k, num_heads_q=None, ...)
    flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, head_dim_v,
                           tile_scheduler_metadata, num_splits, softmax_scale=None, causal=False, ...)
flashmla's extras: select_config / config= (pin a kernel config), scheduled_config, version,
load_bundle / loaded_bundles (ahead-of-time kernels, no NVRTC), tune (runs `flashmla tune`). Binds libflashmla.so's C ABI with ctypes; torch is
imported only by the functions that take tensors.
"""

from ._capi import library_path
from ._version import __version__
from .api import (
    flash_mla_with_kvcache,
    get_mla_metadata,
    load_bundle,
    loaded_bundles,
    scheduled_config,
    select_config,
    tune,
    version,
)
from .errors import (
    CompileError,
    CudaError,
    FlashMLAError,
    InvalidArgumentError,
    LibraryNotFoundError,
    NoDriverError,
    UnsupportedError,
)

__all__ = [
    "__version__",
    "get_mla_metadata",
    "flash_mla_with_kvcache",
    "select_config",
    "scheduled_config",
    "version",
    "tune",
    "load_bundle",
    "loaded_bundles",
    "library_path",
    "FlashMLAError",
    "InvalidArgumentError",
    "UnsupportedError",
    "NoDriverError",
    "CudaError",
    "CompileError",
    "LibraryNotFoundError",
]
