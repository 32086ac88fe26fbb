"""Exceptions raised by flashmla.

Every error is a FlashMLAError (a RuntimeError). Bad arguments, whether found by the
Python checks or by the library (FLASHMLA_ERROR_INVALID_ARGUMENT), are also ValueErrors.
"""


class FlashMLAError(RuntimeError):
    """An error from flashmla or the C library; `status` is the C status code (0 if Python-side)."""

    def __init__(self, message, status=0):
        super().__init__(message)
        self.status = status


class InvalidArgumentError(FlashMLAError, ValueError):
    """A bad shape, dtype, stride, device, pointer or config (FLASHMLA_ERROR_INVALID_ARGUMENT)."""


class UnsupportedError(FlashMLAError):
    """The GPU or feature is not supported, e.g. a GPU older than sm_80 (FLASHMLA_ERROR_UNSUPPORTED)."""


class NoDriverError(FlashMLAError):
    """libcuda / libnvrtc missing, or no GPU (FLASHMLA_ERROR_NO_DRIVER)."""


class CudaError(FlashMLAError):
    """A CUDA Driver API call failed (FLASHMLA_ERROR_CUDA)."""


class CompileError(FlashMLAError):
    """NVRTC rejected a generated kernel (FLASHMLA_ERROR_COMPILE)."""


class LibraryNotFoundError(FlashMLAError):
    """libflashmla.so could not be found or loaded."""


# C status code -> exception class (include/flashmla/flashmla.h, enum flashmla_status).
STATUS_ERRORS = {
    1: InvalidArgumentError,
    2: UnsupportedError,
    3: NoDriverError,
    4: CudaError,
    5: CompileError,
    6: FlashMLAError,
}

STATUS_NAMES = {
    0: "FLASHMLA_OK",
    1: "FLASHMLA_ERROR_INVALID_ARGUMENT",
    2: "FLASHMLA_ERROR_UNSUPPORTED",
    3: "FLASHMLA_ERROR_NO_DRIVER",
    4: "FLASHMLA_ERROR_CUDA",
    5: "FLASHMLA_ERROR_COMPILE",
    6: "FLASHMLA_ERROR_INTERNAL",
}
