"""The item features a multimodal backbone was given, checked once, in a fixed order."""

from __future__ import annotations

import torch

from guider.models.base import ModelInputs


def present_modalities(inputs: ModelInputs) -> dict[str, torch.Tensor]:
    """{"text": [n_items, d_t], "image": [n_items, d_v]} restricted to the features present.

    Text comes first, as in MMRec (VBPR concatenates text then image). A feature matrix
    whose row count is not `n_items`, or that is not 2-D, is rejected with a clear error.
    """
    found = {"text": inputs.text_feat, "image": inputs.image_feat}
    present = {name: feat for name, feat in found.items() if feat is not None}
    for name, feat in present.items():
        if feat.dim() != 2 or feat.shape[0] != inputs.n_items:
            raise ValueError(
                f"{name} features have shape {tuple(feat.shape)}; expected [n_items={inputs.n_items}, dim]"
            )
        if not torch.isfinite(feat).all():
            raise ValueError(f"{name} features contain NaN or infinite values")
    return present
