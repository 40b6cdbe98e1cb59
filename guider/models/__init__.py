"""Backbones, one file each, registered by name (see `registry.py`); each carries its typed
hyper-parameters as `Config` (MMRec's defaults, with their provenance and MMRec's grid)."""

# registration order is the order of the paper's tables (registration side effect)
# isort: off
from guider.models import bpr, lightgcn, vbpr, mmgcn, grcn, dualgnn, lattice, slmrec, freedom, bm3  # noqa: F401
from guider.models import dragon, mgcn, lgmrec, smore, damrs, pop  # noqa: F401

# isort: on
from guider.models.base import Embeddings, ModelConfig, ModelInputs, Recommender
from guider.models.registry import (
    available,
    build_model,
    default_hparams,
    get_class,
    model_config,
    register,
    registered,
)

__all__ = [
    "Embeddings",
    "ModelConfig",
    "ModelInputs",
    "Recommender",
    "available",
    "build_model",
    "default_hparams",
    "get_class",
    "model_config",
    "register",
    "registered",
]
