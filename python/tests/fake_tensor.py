"""A stand-in for torch.Tensor with just what flashmla's argument checks read."""


class FakeTensor:
    """shape, dtype (a name such as "torch.bfloat16"), device ("cuda:0", "cpu"), strides
    (default: contiguous) and a data pointer; no data."""

    def __init__(self, shape, dtype="torch.bfloat16", device="cuda:0", strides=None, ptr=0x7F0000000000):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.device = device
        if strides is None:
            strides, step = [], 1
            for d in reversed(self.shape):
                strides.insert(0, step)
                step *= max(d, 1)
        self._strides = tuple(strides)
        self._ptr = ptr

    @property
    def is_cuda(self):
        return str(self.device).startswith("cuda")

    def stride(self, dim=None):
        return self._strides if dim is None else self._strides[dim]

    def dim(self):
        return len(self.shape)

    def data_ptr(self):
        return self._ptr

    def is_contiguous(self):
        return self._strides == FakeTensor(self.shape).stride()

    def __repr__(self):
        return f"FakeTensor(shape={self.shape}, dtype={self.dtype}, device={self.device}, strides={self._strides})"
