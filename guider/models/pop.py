"""Most-popular: scores every item by its train interaction count (a sanity baseline)."""

from __future__ import annotations

import numpy as np
import torch

from guider.models.base import Embeddings, ModelInputs, Recommender
from guider.models.registry import register


@register("pop")
class Pop(Recommender):
    display_name = "MostPop"
    trainable = False

    def __init__(self, inputs: ModelInputs, config=None):
        super().__init__(inputs, config)
        counts = np.bincount(inputs.train_items, minlength=inputs.n_items).astype(np.float32)
        self.register_buffer("popularity", torch.from_numpy(counts)[:, None])  # [n_items, 1]

    def propagate(self) -> Embeddings:
        ones = torch.ones(self.n_users, 1, device=self.popularity.device)
        return Embeddings(users=ones, items=self.popularity)
