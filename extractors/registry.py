"""A timm-style registry: ``@register_extractor`` on a class, ``get_extractor(name, **cfg)``, ``list_extractors()``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from extractors.base import Extractor

_REGISTRY: dict[str, type[Extractor]] = {}
_DEFAULT_ARGS: dict[str, dict[str, Any]] = {}
E = TypeVar("E", bound=type[Extractor])

# Modules that register extractors; imported lazily so `import extractors` stays light (no MediaPipe, no torch).
# timm, open_clip and transformers themselves are imported only when such an extractor is built.
_MODULES = ("extractors.torchvision_frames", "extractors.timm_frames", "extractors.clip_frames",
            "extractors.fer2013_xception", "extractors.facemesh", "extractors.pose", "extractors.fbank",
            "extractors.speech")


def register_extractor(name: str, **default_args: Any) -> Callable[[E], E]:
    """Register a class under ``name``; ``default_args`` pre-fill its config (e.g. the ResNet depth)."""

    def wrap(cls: E) -> E:
        if name in _REGISTRY:
            raise ValueError(f"extractor {name!r} is registered twice")
        _REGISTRY[name] = cls
        _DEFAULT_ARGS[name] = default_args
        return cls

    return wrap


def _load_all() -> None:
    for mod in _MODULES:
        importlib.import_module(mod)


def list_extractors(kind: str | None = None) -> list[str]:
    """Names of every registered extractor, sorted; ``kind`` (``"frames"`` or ``"audio"``) keeps only those."""
    _load_all()
    return sorted(n for n, cls in _REGISTRY.items() if kind is None or cls.kind == kind)


def extractor_class(name: str) -> type[Extractor]:
    """The class registered under ``name`` (e.g. to read ``needs_class_names`` before building it)."""
    _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown extractor {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def default_config(name: str) -> dict[str, Any]:
    """The config pre-filled at registration (``get_extractor`` merges the caller's over it)."""
    extractor_class(name)
    return dict(_DEFAULT_ARGS[name])


def get_extractor(name: str, **config: Any) -> Extractor:
    """Build extractor ``name`` with ``config`` (merged over its registered defaults)."""
    _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown extractor {name!r}; registered: {sorted(_REGISTRY)}")
    cls = _REGISTRY[name]
    cfg = {**_DEFAULT_ARGS[name], **config}
    obj = cls.__new__(cls)
    obj.name = name  # type: ignore[misc]  # one class may serve several names (resnet18/34/50)
    obj.__init__(**cfg)  # type: ignore[misc]
    return obj
