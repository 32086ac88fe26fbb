"""FlashMLA's Python API over the C ABI, on torch's current device and stream.

Per decoding step:
    tile_scheduler_metadata, num_splits = get_mla_metadata(cache_seqlens, s_q * h_q // h_kv, h_kv)
per layer:
    out, lse = flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, head_dim_v,
                                      tile_scheduler_metadata, num_splits, causal=True)

The split-KV schedule depends on the kernel config, which depends on the dtype, page size,
latent dim and h_q, unknown to get_mla_metadata. So get_mla_metadata returns two int32
buffers that act as the step's handles, and the first flash_mla_with_kvcache call of the
step computes the schedule into them on the GPU; later calls with the same shapes reuse
it. Under CUDA graph capture the first captured call records the schedule computation, so
every replay recomputes it from the cache_seqlens then in memory.
"""

import ctypes
import os

from . import _capi
from .errors import FlashMLAError
from ._capture import capture_id
from ._validate import (
    ROPE_DIM,
    check_decode_inputs,
    check_metadata_inputs,
    dtype_name,
    fail,
    strides3,
)

SCHED_WORDS = 8  # int32 words per schedule partition (templates/flashmla/params.cuh, kSchedWords)
CONFIG_ENV = "FLASHMLA_CONFIG"
_STEP_ATTR = "_flashmla_step"


def _align(n, a):
    return (n + a - 1) // a * a


def metadata_capacity_bytes(b, num_sms):
    """Bytes that hold any schedule of a batch of b on num_sms SMs: at most one partition per
    SM ([num_parts, 8] int32) plus split offsets ([b + 1] int32), each padded to 256 bytes."""
    return _align(num_sms * SCHED_WORDS * 4, 256) + _align((b + 1) * 4, 256)


class _Step:
    """State of one decoding step, attached to its tile_scheduler_metadata tensor."""

    def __init__(self, b, num_q_tokens_per_head_k, num_heads_k, num_heads_q, check_seqlens, num_splits_ptr):
        self.b = b
        self.num_q_tokens_per_head_k = num_q_tokens_per_head_k
        self.num_heads_k = num_heads_k
        self.num_heads_q = num_heads_q
        self.check_seqlens = check_seqlens
        self.num_splits_ptr = num_splits_ptr
        self.key = None  # (shape, config) the schedule was computed for
        self.capture = None  # 0: computed eagerly; else the id of the graph capture that recorded it
        self.metadata = None  # _capi.Metadata
        self.overflow = None  # a bigger workspace, only if the schedule outgrows the tensor


def _unsupported(feature, what):
    raise NotImplementedError(f"{feature} is not supported by flashmla yet ({what})")


def get_mla_metadata(
    cache_seqlens,
    num_q_tokens_per_head_k,
    num_heads_k,
    num_heads_q=None,
    is_fp8_kvcache=False,
    topk=None,
    *,
    check_seqlens=True,
):
    """Handles for one decoding step's split-KV schedule.

    Arguments:
        cache_seqlens: [b] int32 CUDA tensor.
        num_q_tokens_per_head_k: s_q * h_q // h_kv.
        num_heads_k: h_kv.
        num_heads_q: h_q (optional; checked against q when given).
        is_fp8_kvcache, topk: FlashMLA's FP8 / sparse modes; not supported (must stay default).
        check_seqlens (flashmla extra): when the schedule is computed outside graph capture,
            copy cache_seqlens and block_table to the host once and reject lengths beyond the
            block table or block ids out of range (synchronises the stream once per step).

    Returns:
        tile_scheduler_metadata: [rows, 8] int32 on cache_seqlens' device, the schedule buffer
            (filled by the step's first flash_mla_with_kvcache call).
        num_splits: [b + 1] int32, the cumulative split offsets once the schedule is computed.
    Call once per step (a new call = a new step); pass both to every layer's
    flash_mla_with_kvcache. They are handles: a copy of them carries no schedule.
    """
    if is_fp8_kvcache:
        _unsupported("is_fp8_kvcache=True", "the FP8 KV cache is a planned kernel family")
    if topk is not None:
        _unsupported("topk (sparse attention)", "only dense decode is implemented")
    b = check_metadata_inputs(cache_seqlens, num_q_tokens_per_head_k, num_heads_k, num_heads_q)

    import torch

    device = cache_seqlens.device
    num_sms = torch.cuda.get_device_properties(device).multi_processor_count
    rows = -(-metadata_capacity_bytes(b, num_sms) // (SCHED_WORDS * 4))
    with torch.cuda.device(device):
        tile_scheduler_metadata = torch.empty((rows, SCHED_WORDS), dtype=torch.int32, device=device)
        num_splits = torch.zeros(b + 1, dtype=torch.int32, device=device)
    step = _Step(b, num_q_tokens_per_head_k, num_heads_k, num_heads_q, bool(check_seqlens), num_splits.data_ptr())
    setattr(tile_scheduler_metadata, _STEP_ATTR, step)
    return tile_scheduler_metadata, num_splits


def _step_of(tile_scheduler_metadata, num_splits, p):
    """The step state behind the handles, checked against the call's sizes."""
    step = getattr(tile_scheduler_metadata, _STEP_ATTR, None)
    if step is None:
        fail(
            "tile_scheduler_metadata was not returned by flashmla.get_mla_metadata (the step's schedule state "
            "lives on that tensor object; a copy of it, or DeepSeek FlashMLA's metadata, carries none): call "
            "get_mla_metadata once per decoding step and pass its two results"
        )
    if num_splits is None or num_splits.data_ptr() != step.num_splits_ptr:
        fail("num_splits is not the tensor that get_mla_metadata returned with this tile_scheduler_metadata")
    if p.b != step.b:
        fail(f"q.shape[0] = b = {p.b} but get_mla_metadata got cache_seqlens of batch {step.b}")
    if p.h_kv != step.num_heads_k:
        fail(f"k_cache.shape[2] = h_kv = {p.h_kv} but get_mla_metadata got num_heads_k = {step.num_heads_k}")
    rows = p.s_q * p.h_q // p.h_kv
    if rows != step.num_q_tokens_per_head_k:
        fail(
            f"s_q * h_q // h_kv = {p.s_q} * {p.h_q} // {p.h_kv} = {rows} but get_mla_metadata got "
            f"num_q_tokens_per_head_k = {step.num_q_tokens_per_head_k}"
        )
    if step.num_heads_q is not None and p.h_q != step.num_heads_q:
        fail(f"q.shape[2] = h_q = {p.h_q} but get_mla_metadata got num_heads_q = {step.num_heads_q}")
    return step


def _shape(p):
    dtype = _capi.DTYPE_BF16 if p.dtype == "bfloat16" else _capi.DTYPE_FP16
    return _capi.DecodeShape(
        p.b, p.s_q, p.h_q, p.h_kv, p.latent_dim, ROPE_DIM, p.page_size, p.num_blocks, p.max_blocks_per_seq, dtype
    )


def _table_stride(block_table):
    """Row stride of block_table in elements; 0 (= max_blocks_per_seq) for a single row."""
    return 0 if block_table.shape[0] == 1 else block_table.stride(0)


def _config_bytes(config):
    if config is None:
        return None
    if not isinstance(config, str) or not config:
        fail(f"config = {config!r}; expected a KernelConfig id string such as "
             "'decode_mma-bf16-l512-r64-p64-q64-k32-w8-s3-sm_90a', or None")
    return config.encode()


def _schedule(step, p, shape, config, block_table, cache_seqlens, tile, num_splits, stream):
    """The step's schedule for this shape: computed on the first call (of the step, or of a graph
    capture), then reused."""
    import torch

    lib = _capi.lib()
    capturing = torch.cuda.is_current_stream_capturing()
    capture = 0
    if capturing:
        capture = capture_id(stream)
        if capture is None:
            capture = object()  # unknown capture: recompute on every captured call
    key = (p, config, None if config else os.environ.get(CONFIG_ENV))
    if step.metadata is not None and step.key == key and step.capture == capture:
        return step.metadata

    config_id = _config_bytes(config)
    needed = ctypes.c_size_t()
    _capi.check(lib.flashmla_metadata_workspace_size(ctypes.byref(shape), config_id, ctypes.byref(needed)),
                "flashmla_metadata_workspace_size")
    workspace = tile
    if needed.value > tile.numel() * 4:
        if step.overflow is None or step.overflow.numel() * 4 < needed.value:
            step.overflow = torch.empty(-(-needed.value // 4), dtype=torch.int32, device=tile.device)
        workspace = step.overflow
    md = _capi.Metadata()
    check_seqlens = 0 if capturing else int(step.check_seqlens)
    status = lib.flashmla_get_mla_metadata(
        ctypes.byref(shape), cache_seqlens.data_ptr(), block_table.data_ptr(), _table_stride(block_table), stream,
        workspace.data_ptr(), config_id, check_seqlens, ctypes.byref(md))
    _capi.check(status, "flashmla_get_mla_metadata")
    # Publish the split offsets in num_splits (FlashMLA's meaning) and decode from there.
    offset = (md.split_offsets - md.sched) // 4
    num_splits.copy_(workspace.view(-1)[offset:offset + p.b + 1])
    md.split_offsets = num_splits.data_ptr()
    step.key, step.capture, step.metadata = key, capture, md
    return md


def flash_mla_with_kvcache(
    q,
    k_cache,
    block_table,
    cache_seqlens,
    head_dim_v,
    tile_scheduler_metadata,
    num_splits,
    softmax_scale=None,
    causal=False,
    is_fp8_kvcache=False,
    indices=None,
    descale_q=None,
    descale_k=None,
    *,
    config=None,
):
    """Paged MLA decode: out = softmax(q k^T * softmax_scale) v over the cached keys.

    Arguments:
        q: [b, s_q, h_q, d_qk] bfloat16 or float16, d_qk = head_dim_v + 64; last dim contiguous.
        k_cache: [num_blocks, page_size, h_kv, d_qk], q's dtype; page_size 16/32/64/128;
            V is k_cache[..., :head_dim_v].
        block_table: [b, max_blocks_per_seq] int32.
        cache_seqlens: [b] int32.
        head_dim_v: 512 or 256.
        tile_scheduler_metadata, num_splits: this step's get_mla_metadata results.
        softmax_scale: default d_qk ** -0.5.
        causal: with s_q > 1, query s sees keys t <= cache_seqlens - s_q + s.
        is_fp8_kvcache, indices, descale_q, descale_k: FlashMLA's FP8 / sparse modes; not supported.
        config (flashmla extra): a KernelConfig id to pin (see select_config); default: the
            FLASHMLA_CONFIG environment variable, then the library's choice.

    Returns:
        out: [b, s_q, h_q, head_dim_v] in q's dtype.
        lse: [b, h_q, s_q] float32, natural log; +inf (and out = 0) where no key is visible.
    Runs on torch's current stream of q's device.
    """
    if is_fp8_kvcache:
        _unsupported("is_fp8_kvcache=True", "the FP8 KV cache is a planned kernel family")
    if indices is not None:
        _unsupported("indices (sparse attention)", "only dense decode is implemented")
    if descale_q is not None or descale_k is not None:
        _unsupported("descale_q / descale_k", "they belong to the FP8 KV cache")
    p = check_decode_inputs(q, k_cache, block_table, cache_seqlens, head_dim_v, softmax_scale)
    step = _step_of(tile_scheduler_metadata, num_splits, p)
    _config_bytes(config)

    import torch

    lib = _capi.lib()
    shape = _shape(p)
    with torch.cuda.device(q.device):
        stream = torch.cuda.current_stream().cuda_stream
        md = _schedule(step, p, shape, config, block_table, cache_seqlens, tile_scheduler_metadata, num_splits,
                       stream)
        out = torch.empty((p.b, p.s_q, p.h_q, p.latent_dim), dtype=q.dtype, device=q.device)
        lse = torch.empty((p.b, p.h_q, p.s_q), dtype=torch.float32, device=q.device)
        nbytes = ctypes.c_size_t()
        _capi.check(lib.flashmla_decode_workspace_size(ctypes.byref(shape), ctypes.byref(md), ctypes.byref(nbytes)),
                    "flashmla_decode_workspace_size")
        workspace = torch.empty(max(nbytes.value, 16), dtype=torch.uint8, device=q.device)
        args = _capi.DecodeArgs()
        args.q = q.data_ptr()
        args.q_strides[:] = strides3(q)
        args.k_cache = k_cache.data_ptr()
        args.k_strides[:] = strides3(k_cache)
        args.block_table = block_table.data_ptr()
        args.block_table_stride = _table_stride(block_table)
        args.cache_seqlens = cache_seqlens.data_ptr()
        args.out = out.data_ptr()
        args.out_strides[:] = strides3(out)
        args.lse = lse.data_ptr()
        args.softmax_scale = 0.0 if softmax_scale is None else float(softmax_scale)
        args.causal = int(bool(causal))
        status = lib.flashmla_mla_decode(ctypes.byref(shape), ctypes.byref(args), ctypes.byref(md), stream,
                                         workspace.data_ptr())
        _capi.check(status, "flashmla_mla_decode")
    return out, lse


def scheduled_config(tile_scheduler_metadata):
    """The KernelConfig id this step's schedule was computed for (None before the first decode)."""
    step = getattr(tile_scheduler_metadata, _STEP_ATTR, None)
    if step is None or step.metadata is None:
        return None
    return step.metadata.config_id.decode()


def select_config(b=1, s_q=1, h_q=128, h_kv=1, head_dim_v=512, page_size=64, dtype="bfloat16", num_blocks=1,
                  max_blocks_per_seq=1):
    """The KernelConfig id the library picks for a problem on the current GPU (FLASHMLA_CONFIG
    first, then a tuning-table entry of the problem's class, then the heuristic). dtype: torch.bfloat16 / torch.float16 or their names.
    Pass the id to flash_mla_with_kvcache(config=...) to pin it."""
    name = {"bf16": "bfloat16", "fp16": "float16", "half": "float16"}.get(dtype_name(dtype), dtype_name(dtype))
    if name not in ("bfloat16", "float16"):
        fail(f"dtype must be bfloat16 or float16, got {name}")
    shape = _capi.DecodeShape(b, s_q, h_q, h_kv, head_dim_v, ROPE_DIM, page_size, num_blocks, max_blocks_per_seq,
                              _capi.DTYPE_BF16 if name == "bfloat16" else _capi.DTYPE_FP16)
    buf = ctypes.create_string_buffer(256)
    _capi.check(_capi.lib().flashmla_select_config(ctypes.byref(shape), buf, len(buf)), "flashmla_select_config")
    return buf.value.decode()


def version():
    """The C library's version ("major.minor.patch"); loads the library."""
    return _capi.version()


def tune(shapes="preset", budget_minutes=15.0, runs=20, out=None, cli=None):
    """Autotune kernel configs on this GPU and use the resulting table.

    Runs the ``flashmla tune`` command in a child process (the tuner forks compile workers and
    times candidates on the GPU; a process of its own keeps that out of the caller's), then
    reloads the tuning tables so that later calls in this process dispatch through it.

    shapes: "preset" (PERF.md's rows) or a list of dicts with b, s_q, h_q, s_k and optionally
    h_kv, page_size, latent_dim, dtype. out: the table file (default
    $FLASHMLA_CACHE_DIR/tuning/<gpu>.json, where dispatch finds it). cli: path of the
    ``flashmla`` executable (default: next to libflashmla.so, then PATH). Returns the table's path.
    """
    import json
    import shutil
    import subprocess
    import tempfile

    exe = cli or next((str(p) for p in [_capi.library_path().parent / "flashmla"] if p.is_file()), None) \
        or shutil.which("flashmla")
    if not exe:
        raise FileNotFoundError("the flashmla CLI was found neither next to libflashmla.so nor on PATH; pass cli=")
    cmd = [exe, "tune", "--budget", str(budget_minutes), "--runs", str(int(runs))]
    with tempfile.TemporaryDirectory() as tmp:
        if shapes != "preset":
            path = os.path.join(tmp, "shapes.json")
            with open(path, "w") as f:
                json.dump(list(shapes), f)
            cmd += ["--shapes", path]
        else:
            cmd += ["--shapes", "preset"]
        if out:
            cmd += ["--out", os.fspath(out)]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise FlashMLAError(f"flashmla tune failed ({done.returncode}): {done.stderr.strip() or done.stdout[-2000:]}")
    written = [line.split("wrote ", 1)[1] for line in done.stdout.splitlines() if "; wrote " in line]
    _capi.check(_capi.lib().flashmla_reload_tuning_tables(), "flashmla_reload_tuning_tables")
    return written[-1] if written else out


def load_bundle(path):
    """Load an ahead-of-time kernel bundle folder (``flashmla compile -o DIR``): kernels it holds
    are used without NVRTC. Returns True when loaded, False when skipped with a warning (made by
    another library version). A corrupt or truncated kernel file raises ValueError naming it."""
    loaded = ctypes.c_int(0)
    _capi.check(_capi.lib().flashmla_load_bundle(os.fsencode(str(path)), ctypes.byref(loaded)),
                "flashmla_load_bundle")
    return bool(loaded.value)


def loaded_bundles():
    """Bundles loaded so far (folders, FLASHMLA_BUNDLE's included, and embedded names)."""
    buf = ctypes.create_string_buffer(1 << 16)
    _capi.check(_capi.lib().flashmla_loaded_bundles(buf, len(buf)), "flashmla_loaded_bundles")
    return [b for b in buf.value.decode().split("\n") if b]
