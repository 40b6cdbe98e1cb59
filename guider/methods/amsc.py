"""AMSC (Adaptive Modality Similarity Calibration): split each user's train interactions
into a *true* and a *false* (likely noisy) set from item content (specification, Method §1).

Pieces, all computed without any dense |I| x |I| matrix:
- cross-modal confidence S_conf(i) = Jaccard overlap of item i's top-k neighbour sets in
  text space and in vision space (blocked exact top-k, the item itself excluded);
- fused modal similarity S_modal = a cos_text + (1 - a) cos_vision, which is the dot
  product of the fused unit vectors f_i = [sqrt(a) t_i, sqrt(1 - a) v_i];
- calibrated similarity S = c S_modal + (1 - c) S_rec, c = sqrt(r(i) r(i')), r(i) the
  confidence weight of item i: by default (`amsc.confidence: rank`) S_conf's rank among the
  items (the share of items whose S_conf is at most S_conf(i), ties sharing their mean rank),
  with `raw` S_conf itself (0.3's form); S_rec = cos of the teacher's item embeddings, or the
  user's mean S_modal during warm-up;
- interaction score s(u, i) = mean over the user's other train rows i' of S(i, i').

Because c factorises (c = q_i q_i', q = sqrt(r)) and every similarity is a dot
product, sum_{i' in I_u} S(i, i') is a dot product of item i's vectors with per-user sums
of item vectors. The scores are therefore exact in O(|train| x d) time, with no pair list.
I_u is the user's multiset of train rows: a duplicated (u, i) row counts as another item.

Decisions where the specification is silent:
- a dataset with only one modality: S_modal is that modality and the confidence weight is 1
  (no cross-modal evidence to doubt it); a dataset with none cannot run AMSC (clear error);
- why the rank (specification, Method §1): the raw Jaccard's level depends on k and on the
  encoders (it averages ~0.10 at k = 10 on the synthetic data), which made c ~0.1 for almost
  every pair and left S ~90 % the teacher's similarity; the rank keeps the meaning (doubt the
  content of items whose modalities disagree) on a scale where content can decide;
- "at most max_false_ratio of a user's interactions" is floor(ratio x n_u) rows, the
  lowest z first; ties keep table order;
- std_u is the population standard deviation (ddof 0) of the user's scores;
- a user with a single row gets s = 0 and z = 0 (never false).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from guider.config.sections import Section, setting
from guider.models.graph import knn_neighbours

_BLOCK_ELEMENTS = 1 << 23  # floats held at once by the per-user sums
CONFIDENCE_FORMS = ("rank", "raw")


@dataclass(frozen=True)
class AMSCConfig(Section):
    """The `amsc` section (specification, Method §1; every default is the specification's)."""

    knn_k: int = setting(10, ge=1)  # paper: top-k of the cross-modal confidence
    text_weight: float = setting(0.5, ge=0, le=1)  # paper: a in S_modal = a S_text + (1 - a) S_vision
    warmup_epochs: int = setting(5, ge=0)  # paper: epochs with a neutral S_rec
    every: int = setting(5, ge=1)  # paper: recalibrate every `every` epochs
    tau: float = setting(1.0)  # paper: false when z < -tau
    max_false_ratio: float = setting(0.2, ge=0, le=1)  # paper: cap of false rows per user
    min_history: int = setting(4, ge=1)  # paper: users with fewer rows are never reclassified
    confidence: str = setting("rank", choices=CONFIDENCE_FORMS)  # spec (updated): S_conf's rank; raw: S_conf


@dataclass
class Calibration:
    """Result of one AMSC pass over the train rows (table order)."""

    false_mask: torch.Tensor  # [N] bool
    weights: torch.Tensor  # [N] float32 sigmoid(z), the soft confidence kept for DBPR
    z: torch.Tensor  # [N] float32 within-user standardised score
    scores: torch.Tensor  # [N] float32 s(u, i)


# --- cross-modal confidence -------------------------------------------------------------
def item_neighbours(features: torch.Tensor, k: int) -> torch.Tensor:
    """[n, k] indices of each item's k most cosine-similar *other* items (shared blocked top-k)."""
    try:
        return knn_neighbours(features, k, exclude_self=True)[0]
    except ValueError as err:
        raise ValueError(f"amsc.{err}") from None


def jaccard_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[n] |A_i & B_i| / |A_i | B_i| for rows of distinct indices a, b: [n, k]."""
    inter = (a[:, :, None] == b[:, None, :]).any(-1).sum(-1).float()  # [n]
    return inter / (a.shape[1] + b.shape[1] - inter)


def cross_modal_confidence(text: torch.Tensor, image: torch.Tensor, k: int) -> torch.Tensor:
    """[n] S_conf in [0, 1]: overlap of each item's text and vision top-k neighbourhoods."""
    return jaccard_rows(item_neighbours(text, k), item_neighbours(image, k))


def confidence_rank(confidence: torch.Tensor) -> torch.Tensor:
    """[n] the share of items whose confidence is at most each item's, ties sharing their mean
    rank: (mean 1-based rank among equal values) / n, in (0, 1]."""
    _, inverse, counts = torch.unique(confidence, sorted=True, return_inverse=True, return_counts=True)
    last = torch.cumsum(counts, 0).to(torch.float64)  # 1-based rank of each value's last occurrence
    mean_rank = last - (counts.to(torch.float64) - 1) / 2
    return (mean_rank[inverse] / len(confidence)).to(confidence.dtype)


def fused_unit_features(text: torch.Tensor | None, image: torch.Tensor | None, text_weight: float) -> torch.Tensor:
    """[n, d_t + d_v] f_i with f_i . f_i' = a cos_text + (1 - a) cos_vision."""
    parts = []
    if text is not None:
        parts.append(math.sqrt(text_weight if image is not None else 1.0) * F.normalize(_floating(text), dim=-1))
    if image is not None:
        parts.append(math.sqrt(1.0 - text_weight if text is not None else 1.0) * F.normalize(_floating(image), dim=-1))
    if not parts:
        raise ValueError("AMSC needs text or image item features; the dataset has none")
    return torch.cat(parts, dim=1)


def _floating(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.float()


# --- per-user sums ------------------------------------------------------------------------
class UserRows:
    """Train rows grouped by user, for sums over each user's history."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, n_users: int):
        self.users, self.items, self.n_users = users, items, n_users
        self.order = torch.argsort(users, stable=True)  # rows sorted by user
        self.counts = torch.bincount(users, minlength=n_users)  # [n_users]
        self.starts = torch.cumsum(self.counts, 0) - self.counts  # [n_users]

    def sum_per_user(self, values: torch.Tensor) -> torch.Tensor:
        """[n_users, ...] sum of per-row `values` [N, ...] over each user's rows."""
        out = torch.zeros((self.n_users, *values.shape[1:]), dtype=values.dtype, device=values.device)
        return out.index_add_(0, self.users, values)

    def dot_with_user_sum(self, vectors: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """[N] left_r * v_{i_r} . sum_{r' of user(r)} right_r' v_{i_r'} for every row r.

        vectors: [n_items, d]; left, right: [N] per-row weights. Rows are processed in
        blocks of whole users; a block's user sums are one sparse (block users x items)
        times dense (items x d) product, so at most ~_BLOCK_ELEMENTS floats are held.
        """
        n_rows, (n_items, dim) = len(self.users), vectors.shape
        out = torch.empty(n_rows, dtype=vectors.dtype, device=vectors.device)
        rows_per_block = max(1, _BLOCK_ELEMENTS // max(1, dim))
        for rows in self._user_blocks(rows_per_block):
            users, items = self.users[rows], self.items[rows]
            local = users - users.min()  # [b]
            n_local = int(local.max()) + 1
            history = torch.sparse_coo_tensor(
                torch.stack([local, items]), right[rows].to(vectors.dtype), (n_local, n_items), check_invariants=True
            ).coalesce()  # [n_local, n_items]
            sums = torch.sparse.mm(history, vectors)  # [n_local, d]
            out[rows] = left[rows] * (vectors[items] * sums[local]).sum(-1)
        return out

    def _user_blocks(self, rows_per_block: int):
        """Yield row index tensors, each covering whole users, ~rows_per_block rows each."""
        n_rows = len(self.users)
        sorted_users = self.users[self.order]
        start = 0
        while start < n_rows:
            end = min(n_rows, start + rows_per_block)
            if end < n_rows:  # extend to the end of the last user in the block
                last = sorted_users[end - 1]
                end = int(self.starts[last] + self.counts[last])
            yield self.order[start:end]
            start = end


# --- scores and reclassification ----------------------------------------------------------
def _row_terms(rows: UserRows, vectors: torch.Tensor, confidence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([N] q_i = sqrt(r(i)) of the confidence weight r, [N] the self-similarity v_i . v_i) for every train row."""
    r = confidence.to(vectors.dtype).sqrt()[rows.items]
    return r, (vectors**2).sum(-1)[rows.items]


def calibrated_modal_sums(rows: UserRows, fused: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """[N] sum over the user's other rows i' of c(i, i') S_modal(i, i'), c = r_i r_i'.

    Depends only on the frozen features and S_conf, so AMSC computes it once per run."""
    r, self_modal = _row_terms(rows, fused, confidence)  # [N], [N]
    return rows.dot_with_user_sum(fused, r, r) - r**2 * self_modal


def neutral_rec_sums(rows: UserRows, fused: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """[N] the warm-up S_rec term: m_u sum over the user's other rows of (1 - c(i, i')),
    m_u = the user's mean S_modal over pairs of distinct rows (also feature-only)."""
    r, self_modal = _row_terms(rows, fused, confidence)  # [N], [N]
    ones = torch.ones_like(r)
    pair_sum = rows.sum_per_user(rows.dot_with_user_sum(fused, ones, ones) - self_modal)  # [n_users]
    n_u = rows.counts.to(r.dtype)
    mean_modal = pair_sum / (n_u * (n_u - 1)).clamp_min(1)  # [n_users] mean S_modal over pairs
    n = rows.counts[rows.users].to(r.dtype)  # [N]
    r_sum = rows.sum_per_user(r)[rows.users]  # [N]
    return mean_modal[rows.users] * ((n - 1) - r * (r_sum - r))


def teacher_rec_sums(rows: UserRows, confidence: torch.Tensor, rec_item_emb: torch.Tensor) -> torch.Tensor:
    """[N] sum over the user's other rows i' of (1 - c(i, i')) cos(e_i, e_i'), e the
    teacher's item embeddings."""
    unit = F.normalize(_floating(rec_item_emb.detach()), dim=-1)  # [n_items, d]
    r, self_rec = _row_terms(rows, unit, confidence)  # [N], [N]
    ones = torch.ones_like(r)
    return (rows.dot_with_user_sum(unit, ones, ones) - self_rec) - (
        rows.dot_with_user_sum(unit, r, r) - r**2 * self_rec
    )


def interaction_scores(
    rows: UserRows,
    fused: torch.Tensor,
    confidence: torch.Tensor,
    rec_item_emb: torch.Tensor | None = None,
    modal_sums: torch.Tensor | None = None,
) -> torch.Tensor:
    """[N] s(u, i) = mean over the user's other rows i' of S(i, i') (see the module docstring).

    fused: [n_items, D] fused unit features; confidence: [n_items] the confidence weight r
    (S_conf's rank, or S_conf); rec_item_emb: [n_items, d] teacher item embeddings, or None
    for the warm-up (S_rec := the user's mean S_modal); modal_sums: a precomputed
    `calibrated_modal_sums` (None: computed here).
    """
    if modal_sums is None:
        modal_sums = calibrated_modal_sums(rows, fused, confidence)
    if rec_item_emb is None:
        rec_part = neutral_rec_sums(rows, fused, confidence)
    else:
        rec_part = teacher_rec_sums(rows, confidence, rec_item_emb.to(fused.dtype))
    n = rows.counts[rows.users].to(fused.dtype)  # [N]
    scores = (modal_sums + rec_part) / (n - 1).clamp_min(1)
    return torch.where(n > 1, scores, torch.zeros_like(scores))


def standardise_within_user(rows: UserRows, scores: torch.Tensor) -> torch.Tensor:
    """[N] z = (s - mean_u s) / (std_u s + 1e-8), population std over the user's rows."""
    n_u = rows.counts.clamp_min(1).to(scores.dtype)
    mean = rows.sum_per_user(scores) / n_u  # [n_users]
    centred = scores - mean[rows.users]
    std = (rows.sum_per_user(centred**2) / n_u).sqrt()  # [n_users]
    return centred / (std[rows.users] + 1e-8)


def reclassify(rows: UserRows, z: torch.Tensor, config: AMSCConfig) -> torch.Tensor:
    """[N] bool false mask: z < -tau, at most floor(max_false_ratio n_u) lowest-z rows per
    user, never for users with fewer than min_history rows."""
    users = rows.users.cpu().numpy()
    z_np = z.detach().cpu().double().numpy()
    n_u = rows.counts.cpu().numpy()[users]
    order = np.lexsort((np.arange(len(z_np)), z_np, users))  # by user, then z, then table order
    rank = np.empty(len(order), dtype=np.int64)
    starts = (np.cumsum(rows.counts.cpu().numpy()) - rows.counts.cpu().numpy())[users[order]]
    rank[order] = np.arange(len(order)) - starts
    cap = np.floor(config.max_false_ratio * n_u + 1e-9).astype(np.int64)
    mask = (z_np < -config.tau) & (n_u >= config.min_history) & (rank < cap)
    return torch.from_numpy(mask).to(z.device)


class AMSC:
    """Holds the fixed parts (fused features, S_conf) and recalibrates on demand."""

    def __init__(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        n_users: int,
        text: torch.Tensor | None,
        image: torch.Tensor | None,
        config: AMSCConfig,
    ):
        self.config = config
        self.rows = UserRows(users, items, n_users)
        self.fused = fused_unit_features(text, image, config.text_weight)  # [n_items, D]
        if text is not None and image is not None:
            self.confidence = cross_modal_confidence(text, image, config.knn_k)  # [n_items] S_conf
            self.weight = confidence_rank(self.confidence) if config.confidence == "rank" else self.confidence
        else:
            self.confidence = torch.ones(self.fused.shape[0], device=self.fused.device)
            self.weight = self.confidence  # one modality: nothing to doubt it with
        self._modal_cache: tuple[torch.Tensor, torch.Tensor] | None = None  # (S_conf it was built from, sums)

    def _modal_sums(self) -> torch.Tensor:
        """The feature-only part of the scores, computed once (again if S_conf is replaced):
        the D-dimensional fused features make it ~90 % of a recalibration's cost."""
        if self._modal_cache is None or self._modal_cache[0] is not self.weight:
            self._modal_cache = (self.weight, calibrated_modal_sums(self.rows, self.fused, self.weight))
        return self._modal_cache[1]

    def calibrate(self, rec_item_emb: torch.Tensor | None = None) -> Calibration:
        """One AMSC pass; `rec_item_emb` None means warm-up (neutral S_rec)."""
        scores = interaction_scores(self.rows, self.fused, self.weight, rec_item_emb, self._modal_sums())
        z = standardise_within_user(self.rows, scores)
        return Calibration(reclassify(self.rows, z, self.config), torch.sigmoid(z), z, scores)
