"""CI tests (no GPU, no torch): imports, FlashMLA's names and signatures, argument checks on
fake tensors, the library search, and the C ABI bindings when libflashmla.so is present."""

import ctypes
import inspect
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fake_tensor import FakeTensor

import flash_mla
import flashmla
from flashmla import _capi
from flashmla.api import _STEP_ATTR, _Step, metadata_capacity_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]
EMPTY = inspect.Parameter.empty


def library_or_skip():
    try:
        return _capi.lib()
    except flashmla.LibraryNotFoundError as e:
        pytest.skip(f"libflashmla.so not available: {e}")


# --- names and signatures ------------------------------------------------------------------


def test_public_names():
    for name in flashmla.__all__:
        assert hasattr(flashmla, name), name
    assert flash_mla.get_mla_metadata is flashmla.get_mla_metadata
    assert flash_mla.flash_mla_with_kvcache is flashmla.flash_mla_with_kvcache
    from flash_mla.flash_mla_interface import flash_mla_with_kvcache

    assert flash_mla_with_kvcache is flashmla.flash_mla_with_kvcache
    assert issubclass(flashmla.FlashMLAError, RuntimeError)
    assert issubclass(flashmla.InvalidArgumentError, ValueError)
    assert issubclass(flashmla.InvalidArgumentError, flashmla.FlashMLAError)


def positional(fn):
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()
            if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD]


def keyword_only(fn):
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()
            if p.kind == inspect.Parameter.KEYWORD_ONLY]


def test_get_mla_metadata_signature_matches_flashmla():
    assert positional(flash_mla.get_mla_metadata) == [
        ("cache_seqlens", EMPTY),
        ("num_q_tokens_per_head_k", EMPTY),
        ("num_heads_k", EMPTY),
        ("num_heads_q", None),
        ("is_fp8_kvcache", False),
        ("topk", None),
    ]
    assert keyword_only(flash_mla.get_mla_metadata) == [("check_seqlens", True)]


def test_flash_mla_with_kvcache_signature_matches_flashmla():
    assert positional(flash_mla.flash_mla_with_kvcache) == [
        ("q", EMPTY),
        ("k_cache", EMPTY),
        ("block_table", EMPTY),
        ("cache_seqlens", EMPTY),
        ("head_dim_v", EMPTY),
        ("tile_scheduler_metadata", EMPTY),
        ("num_splits", EMPTY),
        ("softmax_scale", None),
        ("causal", False),
        ("is_fp8_kvcache", False),
        ("indices", None),
        ("descale_q", None),
        ("descale_k", None),
    ]
    assert keyword_only(flash_mla.flash_mla_with_kvcache) == [("config", None)]


def test_import_does_not_need_torch_or_the_library():
    code = ("import sys, flashmla, flash_mla; "
            "assert 'torch' not in sys.modules; assert flashmla._capi._lib is None")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "python"))
    subprocess.run([os.sys.executable, "-c", code], check=True, env=env)


# --- argument checks on fake tensors ---------------------------------------------------------


def problem(b=2, s_q=1, h_q=16, h_kv=1, d_qk=576, page_size=64, num_blocks=8, max_blocks=4,
            dtype="torch.bfloat16", **override):
    t = dict(
        q=FakeTensor((b, s_q, h_q, d_qk), dtype),
        k_cache=FakeTensor((num_blocks, page_size, h_kv, d_qk), dtype),
        block_table=FakeTensor((b, max_blocks), "torch.int32"),
        cache_seqlens=FakeTensor((b,), "torch.int32"),
        head_dim_v=d_qk - 64,
        tile_scheduler_metadata=FakeTensor((140, 8), "torch.int32"),
        num_splits=FakeTensor((b + 1,), "torch.int32", ptr=0x7F0000100000),
    )
    t.update(override)
    return t


def call(t, **kwargs):
    return flashmla.flash_mla_with_kvcache(
        t["q"], t["k_cache"], t["block_table"], t["cache_seqlens"], t["head_dim_v"],
        t["tile_scheduler_metadata"], t["num_splits"], **kwargs)


BAD_INPUTS = [
    ("q on the host", dict(q=FakeTensor((2, 1, 16, 576), device="cpu")), "q must be a CUDA tensor, got device cpu"),
    ("k_cache on the host", dict(k_cache=FakeTensor((8, 64, 1, 576), device="cpu")),
     "k_cache must be a CUDA tensor, got device cpu"),
    ("k_cache on another GPU", dict(k_cache=FakeTensor((8, 64, 1, 576), device="cuda:1")),
     "k_cache is on cuda:1 but q is on cuda:0"),
    ("q in fp32", dict(q=FakeTensor((2, 1, 16, 576), "torch.float32")),
     "q.dtype must be bfloat16 or float16, got float32"),
    ("k_cache in fp16", dict(k_cache=FakeTensor((8, 64, 1, 576), "torch.float16")),
     "k_cache.dtype must match q.dtype (bfloat16), got float16"),
    ("int64 block table", dict(block_table=FakeTensor((2, 4), "torch.int64")),
     "block_table.dtype must be int32, got int64"),
    ("int64 lengths", dict(cache_seqlens=FakeTensor((2,), "torch.int64")),
     "cache_seqlens.dtype must be int32, got int64"),
    ("3-D q", dict(q=FakeTensor((2, 16, 576))), "q must be 4-D [b, s_q, h_q, d_qk], got shape (2, 16, 576)"),
    ("3-D k_cache", dict(k_cache=FakeTensor((8, 64, 576))),
     "k_cache must be 4-D [num_blocks, page_size, h_kv, d_qk], got shape (8, 64, 576)"),
    ("1-D block table", dict(block_table=FakeTensor((8,), "torch.int32")),
     "block_table must be 2-D [b, max_blocks_per_seq], got shape (8,)"),
    ("strided q rows", dict(q=FakeTensor((2, 1, 16, 576), strides=(18432 * 2, 18432 * 2, 1152, 2))),
     "q last dimension must be contiguous (stride 1), got stride 2"),
    ("strided k_cache rows", dict(k_cache=FakeTensor((8, 64, 1, 576), strides=(73728, 1152, 1152, 2))),
     "k_cache last dimension must be contiguous (stride 1), got stride 2"),
    ("strided block table", dict(block_table=FakeTensor((2, 4), "torch.int32", strides=(8, 2))),
     "block_table last dimension must be contiguous (stride 1), got stride 2"),
    ("strided lengths", dict(cache_seqlens=FakeTensor((2,), "torch.int32", strides=(2,))),
     "cache_seqlens last dimension must be contiguous (stride 1), got stride 2"),
    ("d_qk mismatch", dict(q=FakeTensor((2, 1, 16, 500))), "q.shape[-1] = 500 does not match k_cache.shape[-1] = 576"),
    ("bad head_dim_v", dict(head_dim_v=500), "head_dim_v = 500 is not supported; expected 512 or 256"),
    ("head_dim_v vs d_qk", dict(head_dim_v=256), "q.shape[-1] = 576 must be head_dim_v + 64 = 320"),
    ("h_q not a multiple of h_kv", dict(q=FakeTensor((2, 1, 10, 576)), k_cache=FakeTensor((8, 64, 3, 576))),
     "q.shape[2] = h_q = 10 is not divisible by k_cache.shape[2] = h_kv = 3"),
    ("h_q too large", dict(q=FakeTensor((2, 1, 256, 576))), "q.shape[2] = h_q = 256; expected at most 128"),
    ("page size", dict(k_cache=FakeTensor((8, 48, 1, 576))),
     "k_cache.shape[1] = page_size = 48 is not supported; expected 16, 32, 64 or 128"),
    ("block table batch", dict(block_table=FakeTensor((3, 4), "torch.int32")),
     "block_table.shape[0] = 3 does not match q.shape[0] = b = 2"),
    ("lengths batch", dict(cache_seqlens=FakeTensor((5,), "torch.int32")),
     "cache_seqlens.shape[0] = 5 does not match q.shape[0] = b = 2"),
]


@pytest.mark.parametrize("override,message", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_decode_rejects_bad_inputs(override, message):
    with pytest.raises(ValueError) as info:
        call(problem(**override))
    assert message in str(info.value)
    assert isinstance(info.value, flashmla.InvalidArgumentError)


@pytest.mark.parametrize("scale", [-1.0, 0.0, float("inf"), float("nan")])
def test_decode_rejects_bad_softmax_scale(scale):
    with pytest.raises(ValueError, match="softmax_scale"):
        call(problem(), softmax_scale=scale)


def test_decode_accepts_valid_fakes_up_to_the_metadata():
    # Valid tensors pass every check; the fake metadata (not from get_mla_metadata) is rejected.
    with pytest.raises(ValueError, match="was not returned by flashmla.get_mla_metadata"):
        call(problem())


def test_check_decode_inputs_reads_the_sizes():
    from flashmla._validate import check_decode_inputs

    t = problem(b=3, s_q=2, h_q=32, h_kv=2, d_qk=320, page_size=16, num_blocks=40, max_blocks=9, dtype="torch.float16")
    p = check_decode_inputs(t["q"], t["k_cache"], t["block_table"], t["cache_seqlens"], 256, None)
    assert (p.b, p.s_q, p.h_q, p.h_kv, p.latent_dim, p.page_size, p.num_blocks, p.max_blocks_per_seq, p.dtype) == (
        3, 2, 32, 2, 256, 16, 40, 9, "float16")
    assert p.d_qk == 320


def with_step(t, b=2, rows=16, h_kv=1, num_heads_q=None):
    step = _Step(b, rows, h_kv, num_heads_q, True, t["num_splits"].data_ptr())
    setattr(t["tile_scheduler_metadata"], _STEP_ATTR, step)
    return t


@pytest.mark.parametrize("override,message", [
    (dict(num_splits=FakeTensor((3,), "torch.int32", ptr=0x1234)), "num_splits is not the tensor"),
    (dict(step_b=4), "q.shape[0] = b = 2 but get_mla_metadata got cache_seqlens of batch 4"),
    (dict(step_rows=128),
     "s_q * h_q // h_kv = 1 * 16 // 1 = 16 but get_mla_metadata got num_q_tokens_per_head_k = 128"),
    (dict(step_h_kv=2), "k_cache.shape[2] = h_kv = 1 but get_mla_metadata got num_heads_k = 2"),
    (dict(step_h_q=32), "q.shape[2] = h_q = 16 but get_mla_metadata got num_heads_q = 32"),
], ids=["num_splits", "batch", "rows", "h_kv", "h_q"])
def test_decode_checks_the_metadata_matches(override, message):
    t = problem()
    override = dict(override)
    ns = override.pop("num_splits", None)
    with_step(t, b=override.get("step_b", 2), rows=override.get("step_rows", 16), h_kv=override.get("step_h_kv", 1),
              num_heads_q=override.get("step_h_q"))
    if ns is not None:
        t["num_splits"] = ns
    with pytest.raises(ValueError) as info:
        call(t)
    assert message in str(info.value)


def test_decode_rejects_a_bad_config_id():
    with pytest.raises(ValueError, match="KernelConfig id"):
        call(with_step(problem()), config=42)


@pytest.mark.parametrize("kwargs,what", [
    (dict(is_fp8_kvcache=True), "is_fp8_kvcache"),
    (dict(indices=FakeTensor((2, 1, 64), "torch.int32")), "sparse"),
    (dict(descale_q=FakeTensor((2,), "torch.float32")), "descale"),
])
def test_decode_unsupported_modes(kwargs, what):
    with pytest.raises(NotImplementedError, match=what):
        call(problem(), **kwargs)


BAD_METADATA = [
    ((FakeTensor((2,), "torch.int32", device="cpu"), 16, 1), {}, "cache_seqlens must be a CUDA tensor, got device cpu"),
    ((FakeTensor((2,), "torch.int64"), 16, 1), {}, "cache_seqlens.dtype must be int32, got int64"),
    ((FakeTensor((2, 3), "torch.int32"), 16, 1), {}, "cache_seqlens must be 1-D [b], got shape (2, 3)"),
    ((FakeTensor((0,), "torch.int32"), 16, 1), {}, "cache_seqlens.shape[0] = 0; expected a batch of at least 1"),
    ((FakeTensor((2,), "torch.int32"), 0, 1), {}, "num_q_tokens_per_head_k = 0; expected a positive int"),
    ((FakeTensor((2,), "torch.int32"), 16, "1"), {}, "num_heads_k = '1'; expected a positive int"),
    ((FakeTensor((2,), "torch.int32"), 16, 2), dict(num_heads_q=3),
     "num_heads_q = 3 is not divisible by num_heads_k = 2"),
]


@pytest.mark.parametrize("args,kwargs,message", BAD_METADATA)
def test_get_mla_metadata_rejects_bad_inputs(args, kwargs, message):
    with pytest.raises(ValueError) as info:
        flashmla.get_mla_metadata(*args, **kwargs)
    assert message in str(info.value)


def test_get_mla_metadata_unsupported_modes():
    lens = FakeTensor((2,), "torch.int32")
    with pytest.raises(NotImplementedError, match="is_fp8_kvcache"):
        flashmla.get_mla_metadata(lens, 16, 1, is_fp8_kvcache=True)
    with pytest.raises(NotImplementedError, match="topk"):
        flashmla.get_mla_metadata(lens, 16, 1, topk=2048)


def test_tune_runs_the_cli_and_reports_its_failure():
    lib = _library_or_skip()
    if not (Path(lib).parent / "flashmla").is_file():
        pytest.skip(f"the flashmla CLI is not next to {lib}")
    if Path("/dev/nvidia0").exists():
        pytest.skip("a GPU is present: test_tune_on_a_gpu_writes_the_table_dispatch_uses covers tune there")
    with pytest.raises(flashmla.FlashMLAError, match="needs a GPU"):
        flashmla.tune(shapes=[{"b": 1, "s_q": 1, "h_q": 16, "s_k": 256}], budget_minutes=0.1)


def test_tune_on_a_gpu_writes_the_table_dispatch_uses(tmp_path, monkeypatch):
    lib = _library_or_skip()
    if not (Path(lib).parent / "flashmla").is_file():
        pytest.skip(f"the flashmla CLI is not next to {lib}")
    if not Path("/dev/nvidia0").exists():
        pytest.skip("no GPU: tune needs one (test_tune_runs_the_cli_and_reports_its_failure covers this machine)")
    import json

    # A class no shipped table covers (fp16, page 32, h_q 24), tuned into a fresh cache folder.
    monkeypatch.setenv("FLASHMLA_CACHE_DIR", str(tmp_path))
    try:
        before = flashmla.select_config(b=4, h_q=24, page_size=32, dtype="float16")
        path = flashmla.tune(shapes=[{"b": 4, "s_q": 1, "h_q": 24, "s_k": 512, "page_size": 32, "dtype": "fp16"}],
                             budget_minutes=3, runs=5)
        assert path and Path(path).parent == tmp_path / "tuning", path
        table = json.loads(Path(path).read_text())
        (entry,) = table["entries"]
        assert entry["key"]["h_q"] == 24 and entry["key"]["page_size"] == 32 and entry["key"]["dtype"] == "fp16"
        timed = [c for c in entry["candidates"] if "median_us" in c]
        assert len(timed) >= 2
        winner = min(timed, key=lambda c: c["median_us"])["config_id"]
        assert flashmla.select_config(b=4, h_q=24, page_size=32, dtype="float16") == winner
        assert entry["heuristic_config"] == before
    finally:
        monkeypatch.undo()
        _capi.check(_capi.lib().flashmla_reload_tuning_tables(), "flashmla_reload_tuning_tables")


def _library_or_skip():
    try:
        return flashmla.library_path()
    except flashmla.LibraryNotFoundError as e:
        pytest.skip(f"libflashmla.so not built: {e}")


def test_load_bundle_rejects_a_folder_without_manifest(tmp_path):
    _library_or_skip()
    with pytest.raises(ValueError, match="no manifest.json"):
        flashmla.load_bundle(tmp_path)


def test_load_bundle_loads_a_compiled_bundle(tmp_path):
    lib = _library_or_skip()
    cli = Path(lib).parent / "flashmla"
    if not cli.is_file():
        pytest.skip(f"the flashmla CLI is not next to {lib}")
    configs = tmp_path / "configs.json"
    configs.write_text('["decode_mma-fp16-l256-r64-p32-q16-k32-w4-s1-sm_80"]')
    subprocess.run([str(cli), "compile", "--arch", "sm_80", "--configs", str(configs), "-o", str(tmp_path / "b")],
                   check=True, capture_output=True)
    assert flashmla.load_bundle(tmp_path / "b") is True
    assert str(tmp_path / "b") in flashmla.loaded_bundles()
    cubin = next((tmp_path / "b").glob("*.cubin"))
    cubin.write_bytes(cubin.read_bytes()[:100])  # truncated copy
    with pytest.raises(ValueError, match="truncated"):
        flashmla.load_bundle(tmp_path / "b")


def test_metadata_capacity_covers_the_library_layout():
    # decode.cpp: align256(num_parts * 8 * 4) + align256((b + 1) * 4), num_parts <= number of SMs.
    for b in (1, 7, 64, 65535):
        for sms in (1, 108, 132, 148):
            for parts in (1, sms // 2 or 1, sms):
                need = -(-parts * 32 // 256) * 256 + -(-(b + 1) * 4 // 256) * 256
                assert need <= metadata_capacity_bytes(b, sms)


# --- library search --------------------------------------------------------------------------


def test_missing_library_error_lists_the_paths(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere" / "libflashmla.so"
    monkeypatch.setenv("FLASHMLA_LIBRARY", str(missing))
    monkeypatch.setattr(_capi, "_lib", None)
    with pytest.raises(flashmla.LibraryNotFoundError) as info:
        flashmla.version()
    assert str(missing) in str(info.value)
    assert "FLASHMLA_LIBRARY" in str(info.value)


def test_default_search_paths(monkeypatch):
    monkeypatch.delenv("FLASHMLA_LIBRARY", raising=False)
    paths = _capi.candidate_paths()
    assert paths[0] == Path(flashmla.__file__).resolve().parent / "libflashmla.so"
    assert REPO_ROOT / "build" / "libflashmla.so" in paths  # running from the source checkout


def test_unloadable_library_is_reported(monkeypatch, tmp_path):
    bogus = tmp_path / "libflashmla.so"
    bogus.write_text("not a shared library")
    monkeypatch.setenv("FLASHMLA_LIBRARY", str(bogus))
    monkeypatch.setattr(_capi, "_lib", None)
    with pytest.raises(flashmla.LibraryNotFoundError, match="could not load"):
        flashmla.version()


# --- the C ABI, when the library is present --------------------------------------------------


def test_version_matches_the_library():
    library_or_skip()
    assert flashmla.version() == "0.1.0" == flashmla.__version__


def test_library_errors_carry_the_message():
    library_or_skip()
    with pytest.raises(flashmla.InvalidArgumentError, match=r"h_q = 0; expected 1 to 128"):
        flashmla.select_config(h_q=0)
    with pytest.raises(flashmla.InvalidArgumentError, match=r"page_size = 48 is not supported"):
        flashmla.select_config(page_size=48)
    assert _capi.last_error().startswith("page_size = 48")


def test_no_gpu_is_reported_as_no_driver():
    library_or_skip()
    try:
        config = flashmla.select_config()
    except flashmla.NoDriverError as e:
        assert "no CUDA driver" in str(e) or "no GPU" in str(e) or "CUDA" in str(e)
    else:
        assert config.startswith("decode_")  # a GPU is present


C_LAYOUT = r"""
#include <stddef.h>
#include <stdio.h>
#include "flashmla/flashmla.h"
#define P(s, f) printf(#s "." #f " %zu\n", offsetof(struct s, f))
int main(void) {
  printf("flashmla_decode_shape %zu\nflashmla_decode_args %zu\nflashmla_metadata %zu\n",
         sizeof(flashmla_decode_shape), sizeof(flashmla_decode_args), sizeof(flashmla_metadata));
  P(flashmla_decode_shape, dtype); P(flashmla_decode_shape, max_blocks_per_seq);
  P(flashmla_decode_args, q_strides); P(flashmla_decode_args, k_cache); P(flashmla_decode_args, k_strides);
  P(flashmla_decode_args, block_table); P(flashmla_decode_args, block_table_stride);
  P(flashmla_decode_args, cache_seqlens); P(flashmla_decode_args, out); P(flashmla_decode_args, out_strides);
  P(flashmla_decode_args, lse); P(flashmla_decode_args, softmax_scale); P(flashmla_decode_args, causal);
  P(flashmla_metadata, num_parts); P(flashmla_metadata, h_kv); P(flashmla_metadata, sched);
  P(flashmla_metadata, split_offsets);
  return 0;
}
"""


def test_ctypes_structs_match_the_c_header(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    header = REPO_ROOT / "include" / "flashmla" / "flashmla.h"
    if cc is None or not header.is_file():
        pytest.skip("no C compiler or no include/flashmla/flashmla.h")
    (tmp_path / "layout.c").write_text(C_LAYOUT)
    exe = tmp_path / "layout"
    subprocess.run([cc, "-I", str(REPO_ROOT / "include"), str(tmp_path / "layout.c"), "-o", str(exe)], check=True)
    want = dict(line.split() for line in subprocess.run([str(exe)], check=True, capture_output=True,
                                                        text=True).stdout.splitlines())
    structs = {"flashmla_decode_shape": _capi.DecodeShape, "flashmla_decode_args": _capi.DecodeArgs,
               "flashmla_metadata": _capi.Metadata}
    got = {}
    for key in want:
        name, _, field = key.partition(".")
        cls = structs[name]
        got[key] = str(getattr(cls, field).offset if field else ctypes.sizeof(cls))
    assert got == want


# --- benchmark formulas ----------------------------------------------------------------------


def test_bench_formulas_match_perf_md():
    from flashmla import bench

    # PERF.md's FlashMLA anchor: b=128 s_q=1 h_q=16 s_k=4096, 230.8 us -> 79 TFLOP/s, 2636 GB/s.
    us = 230.8
    assert round(bench.flops(128, 1, 16, 4096) / us * 1e-6) == 79
    assert round(bench.bytes_moved(128, 1, 16, 4096) / us * 1e-3) == 2636
    assert len(bench.MATRIX) == 11
    rows = [dict(b=1, s_q=1, h_q=128, s_k=65536, impl="sdpa", us=None, tflops=None, gbs=None,
                 skipped="out of memory: CUDA out of memory")]
    assert "out of memory" in bench.format_table(rows)
