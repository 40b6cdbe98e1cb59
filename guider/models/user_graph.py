"""The sampled user co-occurrence graph of DualGNN (Wang et al., IEEE TMM 2021) and DRAGON
(Zhou et al., ECAI 2023), as MMRec builds it.

MMRec reads each user's co-occurring users from `user_graph_dict.npy`, which its
preprocessing script (preprocessing/dualgnn-gen-u-u-matrix.py) makes from the train split:
per user, the users sharing items with it, most shared items first, at most 200. Every epoch
`topk_sample` cuts the lists at `k`, pads short ones with random copies of their own slots,
and weights the slots by a softmax of their counts (or 1/k: `user_aggr_mode` "mean").

Here the lists come from `graph.user_cooccurrence_topk` (sparse, ties to the lower user id;
MMRec's torch.topk orders ties unspecified), the padding is vectorised over users and draws
from the epoch's torch generator instead of numpy's global RNG, and the sampled graph is kept
as a [U, U] CSR matrix (repeated neighbours summed) with its transpose for the backward pass.
`SampledUserGraph` is the mixin both backbones use: buffers `neighbour_*` (rebuilt from the
data), `user_graph_index` / `user_graph_weight` (the epoch's sample, in the state dict) and
`user_adj` / `user_adj_t` (derived).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from guider.models.graph import to_csr, transpose_csr, user_cooccurrence_topk

PREPROCESS_TOP = 200  # MMRec preprocessing/dualgnn-gen-u-u-matrix.py keeps each user's top 200


def neighbour_lists(train: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """([U, k] neighbours, [U, k] counts, [U] how many): each user's first min(k, 200) entries of
    MMRec's user_graph_dict lists (most shared items first, ties to the lower id), zero-padded."""
    n_users = train.shape[0]
    top = user_cooccurrence_topk(train, min(k, PREPROCESS_TOP)).tocoo()
    rows, cols, counts = top.row.astype(np.int64), top.col.astype(np.int64), top.data
    order = np.lexsort((cols, -counts, rows))  # the CSR sorts by column: restore the list order
    rows, cols, counts = rows[order], cols[order], counts[order]
    n_neighbours = np.bincount(rows, minlength=n_users)  # [U]
    first = np.concatenate([[0], np.cumsum(n_neighbours)[:-1]])
    slot = np.arange(len(rows)) - first[rows]
    index = np.zeros((n_users, k), dtype=np.int64)
    count = np.zeros((n_users, k), dtype=np.float32)
    index[rows, slot], count[rows, slot] = cols, counts
    return index, count, n_neighbours


def sample_user_graph(
    index: torch.Tensor, count: torch.Tensor, n_neighbours: torch.Tensor, uniform: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """MMRec's topk_sample, vectorised: ([U, k] neighbour slots, [U, k] softmax weights).

    `index`/`count` [U, k] hold each user's first n_neighbours[u] neighbours and counts. A user
    with fewer than k fills slot p (from n_neighbours[u] on) with a copy of slot
    floor(uniform[u, p] * p), a uniform pick among the p slots filled so far (MMRec draws it
    with np.random.randint from numpy's global RNG; here from `uniform` [U, k], drawn from a
    torch generator). Weights: softmax of the k slots' counts; a user with no neighbour keeps
    k slots of user 0 with weight 0, as in MMRec."""
    index, count = index.clone(), count.clone()
    k = index.shape[1]
    short = torch.nonzero((n_neighbours > 0) & (n_neighbours < k)).squeeze(1)  # [S] users to pad
    short_n = n_neighbours[short]  # [S]
    for slot in range(1, k):
        rows = short[short_n <= slot]  # users whose slot `slot` is padding
        source = (uniform[rows, slot] * slot).long().clamp_(max=slot - 1)  # guard: u * p may round to p
        index[rows, slot] = index[rows, source]
        count[rows, slot] = count[rows, source]
    weight = torch.softmax(count, dim=1) * (n_neighbours > 0).unsqueeze(1)  # [U, k]
    return index, weight


class SampledUserGraph:
    """Mixin for a Recommender with `n_users`, `k` and `user_aggr_mode`: the user graph,
    resampled in `on_epoch_start` (MMRec's pre_epoch_processing)."""

    def _init_user_graph(self, train: sp.csr_matrix, device: torch.device) -> None:
        """Register the neighbour lists and the sampled graph, and draw a graph before training
        (torch's global RNG, seeded by the trainer)."""
        index, count, n_neighbours = neighbour_lists(train, self.k)
        self.register_buffer("neighbour_index", torch.from_numpy(index).to(device), persistent=False)
        self.register_buffer("neighbour_count", torch.from_numpy(count).to(device), persistent=False)
        self.register_buffer("n_neighbours", torch.from_numpy(n_neighbours).to(device), persistent=False)
        # The epoch's sampled user graph, saved with the parameters; its CSR form is derived.
        self.register_buffer("user_graph_index", torch.zeros(self.n_users, self.k, dtype=torch.long, device=device))
        self.register_buffer("user_graph_weight", torch.zeros(self.n_users, self.k, device=device))
        self.register_buffer("user_adj", None, persistent=False)
        self.register_buffer("user_adj_t", None, persistent=False)
        self.register_load_state_dict_post_hook(_rebuild_user_adj)
        self.on_epoch_start(-1, None)

    def on_epoch_start(self, epoch: int, generator: torch.Generator | None) -> None:
        """MMRec's pre_epoch_processing: resample the user graph (torch's global RNG if no generator)."""
        uniform = torch.rand(self.n_users, self.k, dtype=torch.float64, generator=generator)  # [U, k]
        index, weight = sample_user_graph(
            self.neighbour_index, self.neighbour_count, self.n_neighbours, uniform.to(self.n_neighbours.device)
        )
        if self.user_aggr_mode == "mean":
            has = (self.n_neighbours > 0).float().unsqueeze(1)  # [U, 1]
            weight = has.expand(-1, self.k) / self.k  # 1/k in every slot of a user with neighbours
        self.user_graph_index.copy_(index)
        self.user_graph_weight.copy_(weight)
        self._build_user_adj()

    def _build_user_adj(self) -> None:
        """The sampled graph as a [U, U] CSR matrix (repeated neighbours summed) and its transpose."""
        has = (self.n_neighbours > 0).repeat_interleave(self.k)  # [U k] slots of users with neighbours
        rows = torch.arange(self.n_users, device=has.device).repeat_interleave(self.k)[has]
        cols = self.user_graph_index.reshape(-1)[has]
        values = self.user_graph_weight.reshape(-1)[has]
        shape = (self.n_users, self.n_users)
        adj = to_csr(torch.sparse_coo_tensor(torch.stack([rows, cols]), values, shape, check_invariants=False))
        self.user_adj, self.user_adj_t = adj, transpose_csr(adj)


def _rebuild_user_adj(model: SampledUserGraph, _incompatible_keys) -> None:
    """load_state_dict post-hook: the CSR user graph follows the loaded sampled graph."""
    model._build_user_adj()
