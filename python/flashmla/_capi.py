"""ctypes bindings of the C ABI (include/flashmla/flashmla.h) and the search for libflashmla.so.

Nothing here imports torch: the structs take raw device pointers (ints) and strides in
elements. The library is loaded on first use, not at import, so `import flashmla` works
on machines without it.

Search order for the shared library:
  1. the FLASHMLA_LIBRARY environment variable (a path to libflashmla.so),
  2. the copy bundled into the installed package (flashmla/libflashmla.so),
  3. when running from a source checkout: python/build/cmake-flashmla/ (where
     `pip install ./python` builds it), then the repository's build/libflashmla.so.
"""

import ctypes
import os
import threading
from pathlib import Path

from .errors import STATUS_ERRORS, STATUS_NAMES, FlashMLAError, LibraryNotFoundError

LIBRARY_ENV = "FLASHMLA_LIBRARY"
LIBRARY_NAME = "libflashmla.so"

# enum flashmla_dtype
DTYPE_BF16 = 0
DTYPE_FP16 = 1

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parent.parent  # python/flashmla -> python -> repository root


class DecodeShape(ctypes.Structure):
    """struct flashmla_decode_shape."""

    _fields_ = [
        ("b", ctypes.c_int),
        ("s_q", ctypes.c_int),
        ("h_q", ctypes.c_int),
        ("h_kv", ctypes.c_int),
        ("latent_dim", ctypes.c_int),
        ("rope_dim", ctypes.c_int),
        ("page_size", ctypes.c_int),
        ("num_blocks", ctypes.c_int),
        ("max_blocks_per_seq", ctypes.c_int),
        ("dtype", ctypes.c_int),  # enum flashmla_dtype
    ]


_Strides = ctypes.c_int64 * 3


class DecodeArgs(ctypes.Structure):
    """struct flashmla_decode_args: device pointers, strides in elements (0 = contiguous)."""

    _fields_ = [
        ("q", ctypes.c_void_p),  # [b, s_q, h_q, d_qk]
        ("q_strides", _Strides),  # b, s_q, h_q
        ("k_cache", ctypes.c_void_p),  # [num_blocks, page_size, h_kv, d_qk]
        ("k_strides", _Strides),  # block, row, head
        ("block_table", ctypes.c_void_p),  # int32 [b, max_blocks_per_seq]
        ("block_table_stride", ctypes.c_int64),
        ("cache_seqlens", ctypes.c_void_p),  # int32 [b]
        ("out", ctypes.c_void_p),  # [b, s_q, h_q, latent_dim]
        ("out_strides", _Strides),
        ("lse", ctypes.c_void_p),  # fp32 [b, h_q, s_q]
        ("softmax_scale", ctypes.c_float),  # 0: d_qk^-0.5
        ("causal", ctypes.c_int),
    ]


class Metadata(ctypes.Structure):
    """struct flashmla_metadata: the split-KV schedule of one step (pointers into a workspace)."""

    _fields_ = [
        ("config_id", ctypes.c_char * 96),
        ("num_parts", ctypes.c_int),
        ("b", ctypes.c_int),
        ("s_q", ctypes.c_int),
        ("h_q", ctypes.c_int),
        ("h_kv", ctypes.c_int),
        ("sched", ctypes.c_void_p),  # int32 [num_parts, 8]
        ("split_offsets", ctypes.c_void_p),  # int32 [b + 1]
    ]


_P = ctypes.POINTER
_SIGNATURES = {
    "flashmla_last_error": ([], ctypes.c_char_p),
    "flashmla_version": ([], ctypes.c_char_p),
    "flashmla_metadata_workspace_size": ([_P(DecodeShape), ctypes.c_char_p, _P(ctypes.c_size_t)], ctypes.c_int),
    "flashmla_get_mla_metadata": (
        [_P(DecodeShape), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
         ctypes.c_char_p, ctypes.c_int, _P(Metadata)],
        ctypes.c_int,
    ),
    "flashmla_decode_workspace_size": ([_P(DecodeShape), _P(Metadata), _P(ctypes.c_size_t)], ctypes.c_int),
    "flashmla_mla_decode": (
        [_P(DecodeShape), _P(DecodeArgs), _P(Metadata), ctypes.c_void_p, ctypes.c_void_p],
        ctypes.c_int,
    ),
    "flashmla_select_config": ([_P(DecodeShape), ctypes.c_char_p, ctypes.c_size_t], ctypes.c_int),
    "flashmla_load_bundle": ([ctypes.c_char_p, _P(ctypes.c_int)], ctypes.c_int),
    "flashmla_loaded_bundles": ([ctypes.c_char_p, ctypes.c_size_t], ctypes.c_int),
    "flashmla_reload_tuning_tables": ([], ctypes.c_int),
}

_lock = threading.Lock()
_lib = None


def candidate_paths():
    """The paths tried for libflashmla.so, in order (FLASHMLA_LIBRARY alone when it is set)."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return [Path(env)]
    paths = [_PACKAGE_DIR / LIBRARY_NAME]
    if (_PACKAGE_DIR.parent / "setup.py").is_file() and (_REPO_ROOT / "CMakeLists.txt").is_file():
        paths += [_PACKAGE_DIR.parent / "build" / "cmake-flashmla" / LIBRARY_NAME, _REPO_ROOT / "build" / LIBRARY_NAME]
    return paths


def _dlopen_mode():
    """RTLD_LOCAL | RTLD_DEEPBIND: the library binds to its own (header-only fmt, nlohmann_json,
    std) instantiations before same-named ones that other libraries in the process export.
    FLASHMLA_DLOPEN_DEEPBIND=0 turns DEEPBIND off (AddressSanitizer, for one, rejects it)."""
    mode = ctypes.RTLD_LOCAL
    if os.environ.get("FLASHMLA_DLOPEN_DEEPBIND", "1") != "0":
        mode |= getattr(os, "RTLD_DEEPBIND", 0)
    return mode


def _open(path):
    lib = ctypes.CDLL(str(path), mode=_dlopen_mode())
    for name, (argtypes, restype) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = restype
    return lib


def library_path():
    """Path of the libflashmla.so that is (or would be) loaded; raises LibraryNotFoundError."""
    tried = candidate_paths()
    for path in tried:
        if path.is_file():
            return path
    lines = "\n".join(f"  {p}" for p in tried)
    how = (
        f"{LIBRARY_ENV} is set but names no file"
        if os.environ.get(LIBRARY_ENV)
        else f"set {LIBRARY_ENV}=/path/to/libflashmla.so, or build it with "
        "`cmake -S . -B build -G Ninja && ninja -C build flashmla` in the repository, "
        "or reinstall with `pip install ./python` where cmake and ninja are available"
    )
    raise LibraryNotFoundError(f"libflashmla.so not found; tried:\n{lines}\n{how}")


def lib():
    """The loaded library (loaded once per process)."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                path = library_path()
                try:
                    _lib = _open(path)
                except OSError as e:
                    raise LibraryNotFoundError(f"could not load {path}: {e}") from e
    return _lib


def last_error():
    """flashmla_last_error(): the message of this thread's last failed call."""
    return lib().flashmla_last_error().decode(errors="replace")


def check(status, what):
    """Raise the exception matching a C status code, carrying flashmla_last_error()."""
    if status == 0:
        return
    message = last_error() or f"{what} failed"
    cls = STATUS_ERRORS.get(status, FlashMLAError)
    raise cls(f"{message} [{what}: {STATUS_NAMES.get(status, status)}]", status)


def version():
    """The C library's version string, "major.minor.patch"."""
    return lib().flashmla_version().decode()
