"""Offline item-feature encoders: text (sentence-transformers) and images (ImageNet CNNs).

The encoders are imported on first use, so `import guider.features` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"encode_texts": "guider.features.text", "encode_images": "guider.features.image"}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'guider.features' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
