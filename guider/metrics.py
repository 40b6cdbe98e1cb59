"""Full-ranking top-K evaluation (protocol.md, "Evaluation").

Every user with at least one target item (valid or test) and one train item is ranked
against all items; the user's train items are masked out (valid items stay in at test
time, as MMRec does). Ties are broken deterministically: lower item id first. Scores are
produced and ranked in user chunks on the run's device, so memory stays bounded by
`chunk_size x n_items`.

Metrics per user (K in `ks`; T_u = target items, rel_i = 1 if the i-th ranked item is in T_u):
  Recall@K    = hits / |T_u|
  Precision@K = hits / K
  NDCG@K      = sum_i rel_i / log2(i+1)  /  sum_{i <= min(|T_u|,K)} 1 / log2(i+1)
  MAP@K       = (1 / min(|T_u|, K)) * sum_{i <= K} P@i * rel_i
(MMRec divides MAP by min(|T_u|, max K) instead; we follow protocol.md.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

DEFAULT_KS = (5, 10, 20, 50)
METRIC_NAMES = ("recall", "ndcg", "precision", "map")


@dataclass
class EvalResult:
    """Per-user metric values (float64) for the evaluated users."""

    users: np.ndarray  # [n_eval] user ids
    per_user: dict[str, np.ndarray]  # "recall@20" -> [n_eval]

    def means(self) -> dict[str, float]:
        return {key: float(values.mean()) if len(values) else 0.0 for key, values in self.per_user.items()}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"userID": self.users, **self.per_user})


def evaluable_users(target: sp.csr_matrix, train: sp.csr_matrix) -> np.ndarray:
    """Users with at least one target item and at least one train item."""
    has_target = np.diff(target.indptr) > 0
    has_train = np.diff(train.indptr) > 0
    return np.nonzero(has_target & has_train)[0]


def topk_stable(scores: torch.Tensor, k: int) -> torch.Tensor:
    """[B, k] indices of the k best items per row, ties broken by lower item id.

    torch.topk alone is not deterministic under ties; rows whose k-th value is tied with
    an item outside the top-k fall back to a full stable sort (rare for real scores).
    """
    k = min(k, scores.shape[1])
    vals, idx = torch.topk(scores, k, dim=1)  # [B, k]
    by_id = torch.argsort(idx, dim=1)
    idx, vals = idx.gather(1, by_id), vals.gather(1, by_id)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices
    idx = idx.gather(1, order)
    ambiguous = (scores >= vals.min(dim=1, keepdim=True).values).sum(dim=1) > k  # [B]
    if ambiguous.any():
        full = torch.sort(scores[ambiguous], dim=1, descending=True, stable=True).indices[:, :k]
        idx[ambiguous] = full
    return idx


def _dense_rows(mat: sp.csr_matrix, users: np.ndarray, device: torch.device) -> torch.Tensor:
    """[B, n_items] boolean dense block of the CSR rows `users`, built on `device`."""
    block = mat[users]
    rows = np.repeat(np.arange(len(users)), np.diff(block.indptr))
    dense = torch.zeros(len(users), mat.shape[1], dtype=torch.bool, device=device)
    dense[torch.from_numpy(rows).to(device), torch.from_numpy(block.indices.astype(np.int64)).to(device)] = True
    return dense


def _metrics_from_hits(hits: torch.Tensor, n_target: torch.Tensor, ks: Sequence[int]) -> dict[str, torch.Tensor]:
    """Per-user metrics from the [B, Kmax] hit matrix and [B] target counts (float64)."""
    hits = hits.double()
    ranks = torch.arange(1, hits.shape[1] + 1, device=hits.device, dtype=torch.float64)
    discounts = 1.0 / torch.log2(ranks + 1.0)  # [Kmax]
    cum_hits = hits.cumsum(dim=1)  # [B, Kmax]
    prec_at_i = cum_hits / ranks  # [B, Kmax]
    cum_ap = (prec_at_i * hits).cumsum(dim=1)
    cum_dcg = (hits * discounts).cumsum(dim=1)
    cum_idcg = discounts.cumsum(dim=0)  # [Kmax]
    out = {}
    for k in ks:
        ideal = torch.clamp(n_target, max=k)  # [B]
        out[f"recall@{k}"] = cum_hits[:, k - 1] / n_target
        out[f"ndcg@{k}"] = cum_dcg[:, k - 1] / cum_idcg[(ideal - 1).long()]
        out[f"precision@{k}"] = cum_hits[:, k - 1] / k
        out[f"map@{k}"] = cum_ap[:, k - 1] / ideal
    return out


@torch.no_grad()
def evaluate(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    target: sp.csr_matrix,
    mask: sp.csr_matrix,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int = 4096,
    device: torch.device | str = "cpu",
) -> EvalResult:
    """Rank all items for every evaluable user and return per-user metrics.

    `score_fn(users [B] int64 on device) -> [B, n_items]` scores; `target` holds the items to
    find (valid or test), `mask` the items to exclude from the ranking (train).
    """
    device = torch.device(device)
    ks = sorted(ks)
    users = evaluable_users(target, mask)
    n_target_all = np.diff(target.indptr)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(users), chunk_size):
        chunk = users[start : start + chunk_size]
        scores = score_fn(torch.from_numpy(chunk).to(device)).float()  # [B, n_items]
        if not torch.isfinite(scores).all():
            raise FloatingPointError("model produced NaN/inf scores during evaluation")
        scores = scores.masked_fill(_dense_rows(mask, chunk, device), float("-inf"))
        top = topk_stable(scores, ks[-1])  # [B, Kmax]
        hits = _dense_rows(target, chunk, device).gather(1, top)  # [B, min(Kmax, n_items)]
        hits = torch.nn.functional.pad(hits, (0, ks[-1] - hits.shape[1]))  # fewer items than Kmax: no hits past the end
        n_target = torch.from_numpy(n_target_all[chunk]).to(device, torch.float64)
        for key, values in _metrics_from_hits(hits, n_target, ks).items():
            parts.setdefault(key, []).append(values.cpu().numpy())
    per_user = {key: np.concatenate(vals) for key, vals in parts.items()} if parts else {}
    return EvalResult(users=users, per_user=_ordered(per_user, ks))


def _ordered(per_user: dict[str, np.ndarray], ks: Sequence[int]) -> dict[str, np.ndarray]:
    keys = [f"{name}@{k}" for name in METRIC_NAMES for k in ks]
    return {key: per_user.get(key, np.zeros(0)) for key in keys}
