"""Which CUDA graph capture (if any) a stream is in, through libcuda's cuStreamGetCaptureInfo.

A decoding step's schedule is computed by the first flash_mla_with_kvcache call of the
step and reused by later layers. Under graph capture it must be computed inside the
capture (so replays recompute it from new cache_seqlens), even if an eager warm-up
already computed it: the capture id tells the two apart. torch does not expose it, so
it is read from the driver; when that fails, capture_id() returns None and the caller
recomputes the schedule on every captured call (correct, a little slower on replay).
"""

import ctypes

_CAPTURE_STATUS_ACTIVE = 1  # CU_STREAM_CAPTURE_STATUS_ACTIVE
_query = None  # callable(stream) -> (status, id), or False when unavailable


def _load():
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    status, ident = ctypes.c_int(), ctypes.c_uint64()
    # _v2 (CUDA >= 11.3): (stream, status*, id*, graph*, deps**, num_deps*); the outputs after id may be NULL.
    fn = getattr(cuda, "cuStreamGetCaptureInfo_v2", None)
    if fn is not None:
        fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_uint64),
                       ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        fn.restype = ctypes.c_int

        def query(stream):
            rc = fn(stream, ctypes.byref(status), ctypes.byref(ident), None, None, None)
            return (status.value, ident.value) if rc == 0 else None

        return query
    # The original entry point: (stream, status*, id*).
    fn = getattr(cuda, "cuStreamGetCaptureInfo", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_uint64)]
    fn.restype = ctypes.c_int

    def query_v1(stream):
        rc = fn(stream, ctypes.byref(status), ctypes.byref(ident))
        return (status.value, ident.value) if rc == 0 else None

    return query_v1


def capture_id(stream):
    """The id of the capture `stream` (a CUstream as int) is in; None when unknown."""
    global _query
    if _query is None:
        _query = _load()
    if not _query:
        return None
    result = _query(stream)
    if result is None or result[0] != _CAPTURE_STATUS_ACTIVE:
        return None
    return result[1]
