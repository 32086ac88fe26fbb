"""Compile the kernel configs the tests, example and benchmark use (the library's choice for
bf16/fp16, latent 512/256, page 16/32/64/128 and each q-tile bucket) into the disk cache
(FLASHMLA_CACHE_DIR), in a process without torch, so that later processes load them instead
of compiling. Optional: compiling inside a torch process works since the ptxas-log parser
stopped using std::regex (see nvrtc_in_torch.py). Run: python3 python/tools/warm_cache.py
(needs a GPU)."""
import ctypes
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashmla import _capi  # noqa: E402

assert "torch" not in sys.modules
cu = ctypes.CDLL("libcuda.so.1")
ctx, dev, ptr = ctypes.c_void_p(), ctypes.c_int(), ctypes.c_uint64()
assert cu.cuInit(0) == 0 and cu.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0 and cu.cuCtxSetCurrent(ctx) == 0
assert cu.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(1 << 22)) == 0
cu.cuMemsetD8_v2.argtypes = [ctypes.c_uint64, ctypes.c_ubyte, ctypes.c_size_t]
cu.cuMemsetD8_v2(ptr.value, 0, 1 << 22)
lib = _capi.lib()
done = set()
for dtype in (0, 1):
    for latent in (512, 256):
        for page in (16, 32, 64, 128):
            for h_q in (1, 17, 33, 128):
                shape = _capi.DecodeShape(1, 1, h_q, 1, latent, 64, page, 1, 1, dtype)
                buf = ctypes.create_string_buffer(256)
                _capi.check(lib.flashmla_select_config(ctypes.byref(shape), buf, 256), "select")
                if buf.value in done:
                    continue
                md = _capi.Metadata()
                _capi.check(lib.flashmla_get_mla_metadata(ctypes.byref(shape), ptr.value, ptr.value, 0, None,
                                                          ptr.value + (1 << 20), buf.value, 0, ctypes.byref(md)), "md")
                done.add(buf.value)
                print("compiled", buf.value.decode(), flush=True)
assert cu.cuCtxSynchronize() == 0
print(len(done), "configs cached")
