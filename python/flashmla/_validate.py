"""Argument checks on tensors, in pure Python (no torch import).

The checks read only `.shape`, `.dtype`, `.stride()`, `.is_cuda` and `.device`, so the
tests can drive them with fake tensors. Each failure raises InvalidArgumentError (a
ValueError) naming the argument, its value and what was expected, like the C++ API.
"""

import math
from dataclasses import dataclass

from .errors import InvalidArgumentError

ROPE_DIM = 64
LATENT_DIMS = (512, 256)
PAGE_SIZES = (16, 32, 64, 128)
MAX_H_Q = 128


def fail(message):
    raise InvalidArgumentError(message)


def dtype_name(dtype):
    """'bfloat16' for torch.bfloat16 or the string 'torch.bfloat16' / 'bfloat16'."""
    name = str(dtype)
    return name[len("torch."):] if name.startswith("torch.") else name


def shape_of(x):
    return tuple(int(d) for d in x.shape)


def require_cuda(x, name):
    if not getattr(x, "is_cuda", False):
        fail(f"{name} must be a CUDA tensor, got device {x.device}")


def require_same_device(x, name, ref, ref_name):
    if str(x.device) != str(ref.device):
        fail(f"{name} is on {x.device} but {ref_name} is on {ref.device}; expected the same device")


def require_dtype(x, name, allowed):
    got = dtype_name(x.dtype)
    if got not in allowed:
        fail(f"{name}.dtype must be {' or '.join(allowed)}, got {got}")


def require_dims(x, name, ndim, layout):
    shape = shape_of(x)
    if len(shape) != ndim:
        fail(f"{name} must be {ndim}-D {layout}, got shape {shape}")
    return shape


def require_last_dim_contiguous(x, name):
    shape, strides = shape_of(x), tuple(x.stride())
    if shape[-1] > 1 and strides[-1] != 1:
        fail(f"{name} last dimension must be contiguous (stride 1), got stride {strides[-1]}")


def require_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        fail(f"{name} = {value!r}; expected a positive int")


@dataclass(frozen=True)
class DecodeProblem:
    """The sizes of one decode call, read from the tensors."""

    b: int
    s_q: int
    h_q: int
    h_kv: int
    latent_dim: int
    page_size: int
    num_blocks: int
    max_blocks_per_seq: int
    dtype: str  # "bfloat16" or "float16"

    @property
    def d_qk(self):
        return self.latent_dim + ROPE_DIM


def check_metadata_inputs(cache_seqlens, num_q_tokens_per_head_k, num_heads_k, num_heads_q):
    """Checks get_mla_metadata's arguments; returns the batch size b."""
    require_cuda(cache_seqlens, "cache_seqlens")
    require_dtype(cache_seqlens, "cache_seqlens", ("int32",))
    (b,) = require_dims(cache_seqlens, "cache_seqlens", 1, "[b]")
    if b < 1:
        fail(f"cache_seqlens.shape[0] = {b}; expected a batch of at least 1")
    require_last_dim_contiguous(cache_seqlens, "cache_seqlens")
    require_positive_int(num_q_tokens_per_head_k, "num_q_tokens_per_head_k")
    require_positive_int(num_heads_k, "num_heads_k")
    if num_heads_q is not None:
        require_positive_int(num_heads_q, "num_heads_q")
        if num_heads_q % num_heads_k != 0:
            fail(f"num_heads_q = {num_heads_q} is not divisible by num_heads_k = {num_heads_k}")
    return b


def check_decode_inputs(q, k_cache, block_table, cache_seqlens, head_dim_v, softmax_scale):
    """Checks flash_mla_with_kvcache's tensors; returns the DecodeProblem they describe."""
    for x, name in ((q, "q"), (k_cache, "k_cache"), (block_table, "block_table"), (cache_seqlens, "cache_seqlens")):
        require_cuda(x, name)
    for x, name in ((k_cache, "k_cache"), (block_table, "block_table"), (cache_seqlens, "cache_seqlens")):
        require_same_device(x, name, q, "q")

    require_dtype(q, "q", ("bfloat16", "float16"))
    if dtype_name(k_cache.dtype) != dtype_name(q.dtype):
        fail(f"k_cache.dtype must match q.dtype ({dtype_name(q.dtype)}), got {dtype_name(k_cache.dtype)}")
    require_dtype(block_table, "block_table", ("int32",))
    require_dtype(cache_seqlens, "cache_seqlens", ("int32",))

    b, s_q, h_q, d_qk = require_dims(q, "q", 4, "[b, s_q, h_q, d_qk]")
    num_blocks, page_size, h_kv, d_k = require_dims(k_cache, "k_cache", 4, "[num_blocks, page_size, h_kv, d_qk]")
    bt_b, max_blocks_per_seq = require_dims(block_table, "block_table", 2, "[b, max_blocks_per_seq]")
    (sl_b,) = require_dims(cache_seqlens, "cache_seqlens", 1, "[b]")

    require_last_dim_contiguous(q, "q")
    require_last_dim_contiguous(k_cache, "k_cache")
    require_last_dim_contiguous(block_table, "block_table")
    require_last_dim_contiguous(cache_seqlens, "cache_seqlens")

    if d_qk != d_k:
        fail(f"q.shape[-1] = {d_qk} does not match k_cache.shape[-1] = {d_k}")
    if isinstance(head_dim_v, bool) or not isinstance(head_dim_v, int) or head_dim_v not in LATENT_DIMS:
        fail(f"head_dim_v = {head_dim_v!r} is not supported; expected 512 or 256")
    if d_qk != head_dim_v + ROPE_DIM:
        fail(f"q.shape[-1] = {d_qk} must be head_dim_v + {ROPE_DIM} = {head_dim_v + ROPE_DIM}")
    if b < 1 or s_q < 1 or h_q < 1:
        fail(f"q.shape = {shape_of(q)}; expected b, s_q and h_q of at least 1")
    if h_q > MAX_H_Q:
        fail(f"q.shape[2] = h_q = {h_q}; expected at most {MAX_H_Q}")
    if h_kv < 1 or h_q % h_kv != 0:
        fail(f"q.shape[2] = h_q = {h_q} is not divisible by k_cache.shape[2] = h_kv = {h_kv}")
    if page_size not in PAGE_SIZES:
        fail(f"k_cache.shape[1] = page_size = {page_size} is not supported; expected 16, 32, 64 or 128")
    if num_blocks < 1:
        fail(f"k_cache.shape[0] = num_blocks = {num_blocks}; expected at least 1")
    if bt_b != b:
        fail(f"block_table.shape[0] = {bt_b} does not match q.shape[0] = b = {b}")
    if max_blocks_per_seq < 1:
        fail(f"block_table.shape[1] = max_blocks_per_seq = {max_blocks_per_seq}; expected at least 1")
    if sl_b != b:
        fail(f"cache_seqlens.shape[0] = {sl_b} does not match q.shape[0] = b = {b}")
    if softmax_scale is not None:
        scale = float(softmax_scale)
        if not (math.isfinite(scale) and scale > 0):
            fail(f"softmax_scale = {softmax_scale!r}; expected a finite value > 0 (or None for d_qk^-0.5)")

    return DecodeProblem(b, s_q, h_q, h_kv, head_dim_v, page_size, num_blocks, max_blocks_per_seq, dtype_name(q.dtype))


def strides3(x):
    """Strides (elements) of the first three dims; a size-1 dim gets the stride a dense
    layout would give it, since torch leaves those arbitrary and the library checks them."""
    shape, strides = shape_of(x), list(x.stride())
    for i in (2, 1, 0):
        if shape[i] == 1:
            strides[i] = strides[i + 1] * shape[i + 1]
    return strides[:3]
