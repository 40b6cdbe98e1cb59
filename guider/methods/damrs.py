"""DA-MRS as a plug-in (Xv et al., "Improving Multi-modal Recommender Systems by Denoising and
Aligning Multi-modal Content and User Feedback", KDD 2024): the training method `damrs_plugin` on
MF-BPR (`bpr`), VBPR (`vbpr`) and LightGCN (`lightgcn`), the backbones of the paper's
plug-in experiments. (The LightGCN form MMRec ships is also a backbone, `damrs`,
guider/models/damrs.py; both use guider/models/damrs_parts.py.)

What it does to a backbone (one batch):
1. the backbone's forward gives users U and items I; the item embedding the graphs propagate
   (the authors': the raw item ID embedding E) goes `n_mm_layers` times through each
   item-item view -- a denoised kNN graph per modality present and the item-item behaviour
   graph -- giving h_v per view, and their mean h;
2. items are represented as I + h, for training AND evaluation (eval_embeddings);
3. loss = mean of the denoised BPR on U . (I + h) with detached per-triple weights from
   U . unit(h_v) of the positive and negative (DBPR), + reg_weight x EmbLoss of the batch's
   user, positive and negative (I + h) rows, + neighbor_weight x neighbour discrimination of
   the batch's items in each view (alignment guided by graded item relations), + kl_weight x
   the symmetric KL between sigmoid(U . unit(I)) and sigmoid(U . unit(h)) over the batch's
   users x items (alignment guided by user preference). The backbone's own loss
   (sample_losses, regularization) is not used: DA-MRS replaces it, as the authors'
   DA-MRS+X classes replace X's calculate_loss.

Per backbone:
- `bpr`: U, I and E are MF's embeddings (E = I): exactly the authors' DA-MRS+MF-BPR
  (src/models/mfbpr.py), reg_weight 0.1 (their MFBPR.yaml) on the augmented rows;
- `lightgcn`: U, I the LightGCN outputs, E its layer-0 item embedding (`item_emb`): exactly the
  authors' DA-MRS+LightGCN (src/models/lightgcn.py, = MMRec's DAMRS), with no embedding
  regulariser (their LightGCN has none: `run_defaults` sets damrs.reg_weight 0 on lightgcn);
  their runs use 2 LightGCN layers (n_ui_layers [2]); the backbone keeps its own config
  (MMRec LightGCN.yaml's 3 layers, as every method on it): set model.n_layers=2 for theirs;
- `vbpr`: U the 2d user vectors, I = [ID embedding ; projected features]; the graphs
  propagate I itself (so the projection is trained through the views too). The authors'
  DA-MRS+VBPR code is not released (their src/models/vbpr.py is a plain MMBPR); their logs
  show a VBPR-shaped model (2d users, d ID embeddings, the feature projection) with reg_weight
  0.1, neighbor_weight 0.001, kl_weight 1, n_mm_layers 1, knn_k 10, so only the 2d item
  representation can be added to I; that choice is ours.
Other backbones are refused with a ConfigError while the run config is resolved
(`backbone_problem`, before any data is read; the workflow skips those pairs): DA-MRS needs
a backbone that scores by the dot product of its users and items and whose item
representation it can propagate.

From the paper: the plug-in use on MF-BPR / VBPR / LightGCN and the five components (denoised
item-item graphs, item-item behaviour graph, denoised BPR, the two alignments). From the
authors' code: every formula and constant (pseudo labels: top 10, temperature 0.2; the
masked-mean kNN rule; the behaviour graph's >= 2 shared users and top 2; the loss weights).
The paper's text beyond its abstract was not available here; where the authors' code and
MMRec agree (their LightGCN and MMRec's DAMRS are the same code), that code is followed.

Differences from the authors' code, none changing the method:
- the numerics and sparsity of damrs_parts (blocked masked kNN with a float64 mean, the
  behaviour graph computed from the train split instead of a pickled .npy, label prediction
  and discrimination fused in row blocks with a written-out gradient, closed-form KL,
  logsigmoid);
- MF-BPR is initialised as our `bpr` (MMRec's xavier_normal), theirs with xavier_uniform;
- their models build unused text/image linear layers; none here;
- one modality works (their code needs both); fewer than 10 items is a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from guider.config.sections import ConfigError, Section, setting
from guider.methods.base import Batch, Method, register_method
from guider.models.base import Embeddings
from guider.models.damrs_parts import (
    PSEUDO_POSITIVES,
    ItemGraphs,
    alignment_losses,
    denoised_bpr,
    feedback_weights,
    view_mean,
)
from guider.models.losses import emb_norm_loss
from guider.models.modalities import present_modalities

if TYPE_CHECKING:
    from guider.config import RunConfig

# backbone -> what the item-item graphs propagate: its scoring items, or its layer-0 item
# embedding (`item_emb`), the authors' raw item ID embedding
SUPPORTED = {"bpr": "items", "vbpr": "items", "lightgcn": "item_emb"}
# the authors' reg_weight where it is not the section default (MFBPR.yaml's 0.1, also in their
# DA-MRS+VBPR logs): their DA-MRS+LightGCN (lightgcn.py) has no embedding regulariser
AUTHORS_REG_WEIGHT = {"lightgcn": 0.0}


@dataclass(frozen=True)
class DAMRSPluginConfig(Section):
    """The `damrs` section (the authors' src/configs/model/MFBPR.yaml and LightGCN.yaml)."""

    knn_k: int = setting(10, ge=1)  # authors' yamls
    n_mm_layers: int = setting(1, ge=0)  # authors' yamls [1] (commented out: [1, 2])
    kl_weight: float = setting(1.0, ge=0)  # authors' yamls [1]
    neighbor_weight: float = setting(0.001, ge=0)  # authors' yamls [0.001]
    # EmbLoss weight on the batch's user and augmented item rows: authors' MFBPR.yaml [0.1] (and
    # their DA-MRS+VBPR logs); on lightgcn the method's default is 0 (run_defaults)
    reg_weight: float = setting(0.1, ge=0)
    # the behaviour graph: item_graph_dict2.npy, the authors' README build_iib_graph.py --topk=2
    iib_topk: int = setting(2, ge=1)
    iib_min_users: int = setting(2, ge=1)  # build_iib_graph.py: shared users >= 2 (hard-coded)

    grid = {  # authors' MFBPR.yaml hyper_parameters (LightGCN.yaml: n_ui_layers, lr instead of reg_weight)
        "damrs.n_mm_layers": (1,),
        "damrs.reg_weight": (0.1,),
        "damrs.neighbor_weight": (0.001,),
        "damrs.kl_weight": (1.0,),
    }


@register_method("damrs_plugin")
class DAMRSPlugin(Method):
    display_name = "DA-MRS"
    role = "baseline"
    sections = {"damrs": DAMRSPluginConfig}
    requires_features = "any"  # the denoised kNN graphs come from the item features
    reads_negatives = True  # the denoised BPR and its weights read the sampled negative

    @classmethod
    def backbone_problem(cls, backbone: str) -> str | None:
        """Why DA-MRS cannot wrap `backbone` (a registered name), or None."""
        if backbone in SUPPORTED:
            return None
        return (
            f"method damrs_plugin (DA-MRS) plugs into the backbones {', '.join(SUPPORTED)}; got {backbone!r} "
            "(it adds graph-propagated item embeddings to a backbone scoring users . items)"
        )

    @classmethod
    def check_backbone(cls, backbone: str) -> None:
        """ConfigError unless DA-MRS can wrap `backbone`."""
        problem = cls.backbone_problem(backbone)
        if problem is not None:
            raise ConfigError(problem)

    @classmethod
    def run_defaults(cls, backbone: str) -> dict[str, dict[str, Any]]:
        """The authors' per-backbone values (an unsupported backbone is refused by
        `backbone_problem` when the run config is resolved, before any data is read)."""
        if backbone in AUTHORS_REG_WEIGHT:
            return {"damrs": {"reg_weight": AUTHORS_REG_WEIGHT[backbone]}}
        return {}

    def __init__(self, model, inputs, dataset, config: RunConfig):
        super().__init__(model, inputs, dataset, config)
        backbone = type(model).name
        self.check_backbone(backbone)
        modalities = present_modalities(inputs)
        if not modalities:
            raise ConfigError("method damrs_plugin (DA-MRS) needs text or image features; the dataset has none")
        if inputs.n_items < PSEUDO_POSITIVES:
            raise ValueError(f"DA-MRS draws {PSEUDO_POSITIVES} pseudo-positive items; the data has {inputs.n_items}")
        cfg: DAMRSPluginConfig = config.section("damrs")
        self.propagates_id_embedding = SUPPORTED[backbone] == "item_emb"
        self.n_mm_layers, self.kl_weight, self.neighbor_weight = cfg.n_mm_layers, cfg.kl_weight, cfg.neighbor_weight
        self.reg_weight = cfg.reg_weight
        self.graphs = ItemGraphs(
            modalities,
            inputs.train_matrix(),
            knn_k=cfg.knn_k,
            iib_topk=cfg.iib_topk,
            iib_min_users=cfg.iib_min_users,
            device=inputs.device,
        )

    def graph_input(self, emb: Embeddings) -> torch.Tensor:
        """[n_items, d] the item embedding the views propagate (the authors': the raw ID embedding)."""
        return self.model.item_emb if self.propagates_id_embedding else emb.items

    def views(self, emb: Embeddings) -> dict[str, torch.Tensor]:
        return self.graphs.propagate(self.graph_input(emb), self.n_mm_layers)

    def step(self, batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        emb = self.model.propagate()
        views = self.views(emb)  # {view: [n_items, d]}
        content = view_mean(views)  # [n_items, d]
        items = emb.items + content  # [n_items, d]
        u = emb.users[batch.users]  # [B, d]
        pos, neg = items[batch.pos], items[batch.neg]  # [B, d]
        pos_weight, neg_weight = feedback_weights(u, views, batch.pos, batch.neg)
        bpr = denoised_bpr((u * pos).sum(-1), (u * neg).sum(-1), pos_weight, neg_weight).mean()
        neighbour, kl = alignment_losses(emb.users, emb.items, views, content, batch.users, batch.pos, batch.neg)
        reg = self.reg_weight * emb_norm_loss(u, pos, neg)
        loss = bpr + reg + self.neighbor_weight * neighbour + self.kl_weight * kl
        logs = {
            "damrs_pos_weight": pos_weight.mean().detach(),
            "damrs_neg_weight": neg_weight.mean().detach(),
            "damrs_neighbour": neighbour.detach(),
            "damrs_kl": kl.detach(),
        }
        return loss, logs

    @torch.no_grad()
    def eval_embeddings(self) -> Embeddings:
        """The backbone's eval forward with the views' mean added to its items."""
        emb = self.model.eval_embeddings()
        source = self.graph_input(emb).detach()
        content = view_mean(self.graphs.propagate(source, self.n_mm_layers))
        return Embeddings(users=emb.users, items=emb.items + content, extras=emb.extras)
