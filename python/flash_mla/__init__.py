"""DeepSeek FlashMLA's module name over flashmla: `from flash_mla import get_mla_metadata,
flash_mla_with_kvcache` works unchanged. See flashmla.api for the semantics (the metadata
tensors are handles filled by the step's first decode call)."""

from flashmla.api import flash_mla_with_kvcache, get_mla_metadata

__all__ = ["get_mla_metadata", "flash_mla_with_kvcache"]
