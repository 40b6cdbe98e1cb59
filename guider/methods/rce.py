"""R-CE (Reweighted loss; Wang et al., WSDM 2021) on any backbone: each training triple's
loss is multiplied by the detached predicted probability of its label to a power beta,
so hard (probably noisy) positives weigh less.

The original weights a point-wise BCE positive by sigmoid(y_ui)^beta. For pairwise
backbones the predicted probability of the observed preference is
P(i > j) = sigmoid(y_ui - y_uj) from the backbone's scores, so the weight is
sigmoid(y_ui - y_uj)^beta (detached); the loss is the plain mean of the weighted terms
plus the backbone's regulariser, as in the original. beta defaults to 0.2, the value of
the original's GMF runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from guider.config.sections import Section, setting
from guider.methods.base import Batch, Method, register_method

if TYPE_CHECKING:
    from guider.config import RunConfig


@dataclass(frozen=True)
class RCEConfig(Section):
    """The `rce` section."""

    beta: float = setting(0.2, ge=0)  # Wang et al.: the exponent of their GMF runs


@register_method("rce")
class ReweightedLoss(Method):
    display_name = "R-CE"
    role = "baseline"
    sections = {"rce": RCEConfig}
    reads_negatives = True  # the weight is sigmoid(y_ui - y_uj): it needs a sampled negative

    def __init__(self, model, inputs, dataset, config: RunConfig):
        super().__init__(model, inputs, dataset, config)
        self.beta = config.section("rce").beta

    def weights(self, emb, batch: Batch) -> torch.Tensor:
        """[B] sigmoid(y_ui - y_uj)^beta, detached."""
        with torch.no_grad():
            scores = self.model.scores(emb, batch.users, torch.stack([batch.pos, batch.neg], dim=1))  # [B, 2]
            return torch.sigmoid(scores[:, 0] - scores[:, 1]).pow(self.beta)

    def step(self, batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        emb = self.model.propagate()
        weights = self.weights(emb, batch)
        loss = self.model.loss(batch.users, batch.pos, batch.neg, emb=emb, weights=weights)
        return loss, {"rce_mean_weight": weights.mean().detach()}
