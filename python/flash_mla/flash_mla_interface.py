"""FlashMLA's flash_mla.flash_mla_interface path, for code that imports from it."""

from flashmla.api import flash_mla_with_kvcache, get_mla_metadata

__all__ = ["get_mla_metadata", "flash_mla_with_kvcache"]
