"""The extractor zoo: frozen per-frame extractors behind one registry."""

from extractors.base import Extractor
from extractors.registry import get_extractor, list_extractors, register_extractor

__all__ = ["Extractor", "get_extractor", "list_extractors", "register_extractor"]
