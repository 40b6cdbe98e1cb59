"""MMGCN (Wei, Wang, Nie, He, Hong & Chua, "MMGCN: Multi-modal Graph Convolution Network for
Personalized Recommendation of Micro-video", ACM MM 2019), as MMRec's `MMGCN`.

One GCN per modality over the user-item graph (edges in both directions, no self-loops, no
normalisation). Its layer-0 nodes are the rows of normalize([P_m ; F_m]): a per-modality user
preference P_m and the item features F_m (image features first projected 4096 -> 256 by a
linear layer; text features used raw). Each of the `n_layers` layers computes

    h     = leaky_relu(mean over neighbours of x W)               # aggregation (paper eq. 1)
    x_hat = leaky_relu(linear(x)) + id_embedding                  # ID-aware node (paper eq. 5)
    x     = leaky_relu(gate(concat(h, x_hat)))                    # combination by concatenation

and the final user/item representation is the mean over modalities of the last layer's
output; scores are users @ items.T. Loss (MMRec's calculate_loss): -log sigmoid(s_ui - s_uj)
averaged over the batch, plus reg_weight x (mean of squared ID embeddings of the batch's
[user, pos] and [user, neg] rows + mean of squared *image* preferences).

MMRec's code, followed here, differs from the paper in these places (all inherited from the
authors' code, weiyinwei/MMGCN):
- the ID embedding and the user preferences are plain tensors, never registered as
  Parameters: MMRec's optimiser never updates them (they stay at their xavier-normal
  initialisation), and its regulariser, made of them only, has no gradient;
- `concate = 'False'` is a non-empty string, hence true: layers combine by concatenation;
- GCN.forward always runs three layers; the yaml's `n_layers: 2` is read but never used
  (our `n_layers` defaults to 3 to match the computation);
- the modalities are averaged (the paper sums them: a constant factor on the scores);
- only the image GCN's preference is regularised (text's is not).

Differences from MMRec, none changing the model:
- torch_geometric's MessagePassing mean aggregation is a CSR product with the 0/1 adjacency,
  scaled by 1 / degree; nodes without edges receive 0, as PyG's scatter-mean gives. A train
  pair given twice is one edge: MMRec's `inter_matrix(form='coo').astype(np.float32)` sums
  duplicates (scipy's astype of a COO matrix does) before it packs the edge_index;
- the text GCN's layer-0 input (fixed preference + raw features) never changes, so its
  neighbour mean is computed once, and layer 1 uses (A x) W, which equals MMRec's A (x W);
- the ID embedding and preferences are non-trainable buffers drawn from a stored seed (same
  xavier-normal law; only the seed is checkpointed, and they are redrawn on load);
- -logsigmoid instead of -log(sigmoid): equal wherever MMRec's value is finite;
- the ID-embedding penalty is returned per triple by `sample_losses` and the preference
  penalty by `regularization`; their sum is MMRec's reg_loss;
- evaluation propagates with the current parameters; MMRec's full_sort_predict reuses the
  representation of the last training batch's forward, one optimiser step older.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guider.config.sections import setting
from guider.models.base import Embeddings, ModelConfig, ModelInputs, Recommender
from guider.models.graph import sparse_matmul, symmetric_bipartite
from guider.models.modalities import present_modalities
from guider.models.registry import register

# MMRec passes dim_latent=256 to the visual GCN only: image features are projected to 256,
# text features enter the GCN raw.
IMAGE_LATENT_SIZE = 256


@dataclass(frozen=True)
class MMGCNConfig(ModelConfig):
    embedding_size: int = setting(64, ge=1)  # MMRec MMGCN.yaml (dim_x: ID embedding and layer width)
    # MMRec mmgcn.py GCN.forward: three layers, hard-coded (MMGCN.yaml's n_layers: 2 is never read)
    n_layers: int = setting(3, ge=1)
    reg_weight: float = setting(0.0, ge=0)  # MMRec MMGCN.yaml grid [0 .. 0.1]: first value

    grid = {
        "model.reg_weight": (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1),
        "train.lr": (1e-4, 5e-4, 1e-3, 5e-3, 1e-2),
    }  # MMRec MMGCN.yaml (learning_rate)


class ModalityGCN(nn.Module):
    """The trainable layers of one modality's GCN (MMRec's `GCN`, with its initialisation)."""

    def __init__(self, feat_size: int, latent_size: int | None, id_size: int, n_layers: int):
        super().__init__()
        # MMRec's MLP keeps nn.Linear's default initialisation
        self.project = nn.Linear(feat_size, latent_size) if latent_size else None
        in_size = latent_size or feat_size
        sizes = [in_size] + [id_size] * (n_layers - 1)  # input width of each layer
        self.conv = nn.ParameterList([nn.Parameter(nn.init.xavier_normal_(torch.empty(size, size))) for size in sizes])
        self.linear = nn.ModuleList([nn.Linear(size, id_size) for size in sizes])
        self.gate = nn.ModuleList([nn.Linear(size + id_size, id_size) for size in sizes])
        for linear in self.linear:
            nn.init.xavier_normal_(linear.weight)
        nn.init.xavier_normal_(self.gate[0].weight)  # MMRec leaves g_layer2/3 at the default init

    def layer_zero(self, preference: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """[U+I, d0] row-normalised users' preferences stacked over the (projected) item features."""
        items = features if self.project is None else self.project(features)  # [I, d0]
        return F.normalize(torch.cat([preference, items], dim=0))

    def forward(self, x, id_embedding, mean_neighbours, x_mean=None) -> torch.Tensor:
        """[U+I, id_size] after all layers; `x_mean` = mean_neighbours(x) when known (fixed x)."""
        for depth, (weight, linear, gate) in enumerate(zip(self.conv, self.linear, self.gate)):
            message = x_mean @ weight if depth == 0 and x_mean is not None else mean_neighbours(x @ weight)
            h = F.leaky_relu(message)  # [U+I, d]
            x_hat = F.leaky_relu(linear(x)) + id_embedding  # [U+I, id_size]
            x = F.leaky_relu(gate(torch.cat([h, x_hat], dim=1)))  # [U+I, id_size]
        return x


@register("mmgcn")
class MMGCN(Recommender):
    display_name = "MMGCN"
    Config = MMGCNConfig
    uses_features = True

    def __init__(self, inputs: ModelInputs, config: MMGCNConfig):
        super().__init__(inputs, config)
        self.embedding_size, self.reg_weight = config.embedding_size, config.reg_weight
        modalities = present_modalities(inputs)
        self.modalities = list(modalities)
        self.gcn = nn.ModuleDict(
            {
                m: ModalityGCN(
                    f.shape[1], IMAGE_LATENT_SIZE if m == "image" else None, self.embedding_size, config.n_layers
                )
                for m, f in modalities.items()
            }
        )
        for m, feat in modalities.items():
            self.register_buffer(f"feat_{m}", feat.detach(), persistent=False)
        self._register_graph(inputs)
        # Seed of the fixed random tensors (MMRec's untrained id_embedding and preferences);
        # checkpointed in place of the tensors themselves.
        seed = torch.randint(0, 2**62, (), dtype=torch.int64)
        self.register_buffer("fixed_seed", seed.to(inputs.device))
        self._drawn_seed: int | None = None
        self._draw_fixed_tensors()
        self.register_load_state_dict_post_hook(_redraw_fixed_tensors)

    def _register_graph(self, inputs: ModelInputs) -> None:
        """MMRec's edge_index (each distinct train pair in both directions) as a CSR and 1/in-degree."""
        train = inputs.train_matrix().tocoo()  # binary: a repeated pair is one edge
        users = torch.from_numpy(train.row.astype(np.int64)).to(inputs.device)  # [E]
        items = torch.from_numpy(train.col.astype(np.int64)).to(inputs.device)  # [E]
        ones = torch.ones(users.numel(), device=inputs.device)
        adj = symmetric_bipartite(users, items, ones, self.n_users, self.n_items)  # [U+I, U+I] 0/1
        degree = torch.cat(
            [torch.bincount(users, minlength=self.n_users), torch.bincount(items, minlength=self.n_items)]
        ).float()  # [U+I]
        inv_degree = 1.0 / degree.clamp(min=1.0)  # a node without edges sums nothing: its mean is 0
        self.register_buffer("adj", adj, persistent=False)
        self.register_buffer("inv_degree", inv_degree[:, None], persistent=False)  # [U+I, 1]

    def mean_neighbours(self, x: torch.Tensor) -> torch.Tensor:
        """[U+I, d] mean of each node's neighbours' rows (0 for a node without edges)."""
        return sparse_matmul(self.adj, x) * self.inv_degree  # adj is symmetric

    @torch.no_grad()
    def _draw_fixed_tensors(self) -> None:
        """(Re)draw the untrained ID embedding and preferences from `fixed_seed`, and what depends on them."""
        seed = int(self.fixed_seed)
        if seed == self._drawn_seed:
            return
        device = self.fixed_seed.device
        gen = torch.Generator().manual_seed(seed)
        n_nodes = self.n_users + self.n_items
        ids = _xavier_normal(n_nodes, self.embedding_size, gen, device)  # [U+I, d]
        self.register_buffer("id_embedding", ids, persistent=False)
        penalty = torch.zeros((), device=device)
        for m in self.modalities:
            gcn, feat = self.gcn[m], getattr(self, f"feat_{m}")
            width = gcn.project.out_features if gcn.project is not None else feat.shape[1]
            preference = _xavier_normal(self.n_users, width, gen, device)  # [U, d0]
            self.register_buffer(f"preference_{m}", preference, persistent=False)
            if gcn.project is None:  # fixed layer-0 input: its neighbour mean is computed once
                x0 = gcn.layer_zero(preference, feat)  # [U+I, d0]
                self.register_buffer(f"x0_{m}", x0, persistent=False)
                self.register_buffer(f"x0_mean_{m}", self.mean_neighbours(x0), persistent=False)
            if m == "image":  # MMRec regularises the visual GCN's preference only
                penalty = preference.square().mean()
        self.register_buffer("preference_penalty", penalty, persistent=False)
        self._drawn_seed = seed

    def modality_output(self, m: str) -> torch.Tensor:
        """[U+I, d] the last layer of modality `m`'s GCN."""
        gcn = self.gcn[m]
        if gcn.project is None:
            x0, x0_mean = getattr(self, f"x0_{m}"), getattr(self, f"x0_mean_{m}")
        else:
            x0, x0_mean = gcn.layer_zero(getattr(self, f"preference_{m}"), getattr(self, f"feat_{m}")), None
        return gcn(x0, self.id_embedding, self.mean_neighbours, x0_mean)

    def propagate(self) -> Embeddings:
        out = sum(self.modality_output(m) for m in self.modalities) / len(self.modalities)  # [U+I, d]
        return Embeddings(users=out[: self.n_users], items=out[self.n_users :])

    def sample_losses(self, emb, users, pos, neg):
        u = emb.users[users]  # [B, d]
        bpr = -F.logsigmoid((u * emb.items[pos]).sum(-1) - (u * emb.items[neg]).sum(-1))  # [B]
        ids = self.id_embedding
        squares = 2 * ids[users].square().sum(-1)  # the user row is paired with pos and with neg
        squares = squares + ids[pos + self.n_users].square().sum(-1) + ids[neg + self.n_users].square().sum(-1)
        return bpr + self.reg_weight * squares / (2 * self.embedding_size)  # [B]

    def regularization(self, emb, users, pos, neg):
        return self.reg_weight * self.preference_penalty


def _xavier_normal(rows: int, cols: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """[rows, cols] N(0, 2 / (rows + cols)), nn.init.xavier_normal_'s law, drawn on CPU from `gen`."""
    return (torch.randn(rows, cols, generator=gen) * (2.0 / (rows + cols)) ** 0.5).to(device)


def _redraw_fixed_tensors(module: MMGCN, _incompatible_keys) -> None:
    """load_state_dict post-hook: the fixed tensors follow the loaded `fixed_seed`."""
    module._draw_fixed_tensors()
