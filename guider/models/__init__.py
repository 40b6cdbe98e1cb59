"""Backbones, one file each, registered by name (see `registry.py`)."""

from guider.models import bm3, bpr, freedom, lightgcn, pop, vbpr  # noqa: F401  (registration side effect)
from guider.models.base import Embeddings, ModelInputs, Recommender
from guider.models.registry import available, build_model, default_hparams, get_class, register

__all__ = [
    "Embeddings",
    "ModelInputs",
    "Recommender",
    "available",
    "build_model",
    "default_hparams",
    "get_class",
    "register",
]
