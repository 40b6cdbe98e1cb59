"""Full-ranking top-K evaluation (docs/specification.md, Protocol, "Evaluation").

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
MMRec's `map_` (src/utils/metrics.py) divides position k's sum by min(k, min(|T_u|, max K)),
which at k = K is min(|T_u|, K): the same MAP, checked by tests/test_metrics.py against a loop
of MMRec's rule, so MAP columns compare with MMRec-based papers.
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

    torch.topk alone is not deterministic under ties. It is asked for k + 1 values: a row
    whose (k+1)-th value equals its k-th has a tie across the cut and falls back to a full
    stable sort (rare for real scores); every other row's top-k set is exact, and ties
    inside it are ordered by id. NaN ranks above everything (torch's order), so a NaN
    score always reaches the returned values' row (see `evaluate`)."""
    k = min(k, scores.shape[1])
    vals, idx = torch.topk(scores, min(k + 1, scores.shape[1]), dim=1)  # [B, k(+1)]
    ambiguous = vals[:, k] == vals[:, k - 1] if vals.shape[1] > k else None  # [B]
    vals, idx = vals[:, :k], idx[:, :k]
    by_id = torch.argsort(idx, dim=1)
    idx, vals = idx.gather(1, by_id), vals.gather(1, by_id)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices
    idx = idx.gather(1, order)
    if ambiguous is not None and ambiguous.any():
        full = torch.sort(scores[ambiguous], dim=1, descending=True, stable=True).indices[:, :k]
        idx[ambiguous] = full
    return idx


def split_entries(mat: sp.csr_matrix, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CSR entries of rows `users`, as index arrays: (row position in `users` [nnz],
    item [nnz], offsets [len(users) + 1]) with each row's entries at offsets[r]:offsets[r+1]."""
    starts, counts = mat.indptr[users], np.diff(mat.indptr)[users]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    positions = np.repeat(np.arange(len(users)), counts)
    gather = np.arange(offsets[-1]) - np.repeat(offsets[:-1] - starts, counts)  # into mat.indices
    return positions.astype(np.int64), mat.indices[gather].astype(np.int64), offsets


class _SplitIndex:
    """One split's entries for the evaluated users, built once per evaluation; `chunk(a, b)`
    gives users a:b's (row in chunk, item) pairs as device tensors."""

    def __init__(self, mat: sp.csr_matrix, users: np.ndarray, device: torch.device):
        positions, items, self.offsets = split_entries(mat, users)
        self.positions = torch.from_numpy(positions).to(device)
        self.items = torch.from_numpy(items).to(device)

    def chunk(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return self.positions[lo:hi] - start, self.items[lo:hi]


def _hits(top: torch.Tensor, rows: torch.Tensor, items: torch.Tensor, n_items: int) -> torch.Tensor:
    """[B, K] whether top[b, r] is one of row b's target items (given as (rows, items) pairs)."""
    keys = rows * n_items + items  # [nnz]: one key per (row, item)
    queries = torch.arange(top.shape[0], device=top.device).unsqueeze(1) * n_items + top  # [B, K]
    return torch.isin(queries, keys)


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
    find (valid or test), `mask` the items to exclude from the ranking (train). The mask is
    written into the returned scores in place (a view is copied first). Beyond the scores
    and the top-k, the work is O(entries of the two splits): the mask is index assignment
    and the hits a lookup of the top-k among the targets; no dense [B, n_items] mask exists.
    """
    device = torch.device(device)
    ks = sorted(ks)
    users = evaluable_users(target, mask)
    n_target_all = torch.from_numpy(np.diff(target.indptr)[users]).to(device, torch.float64)
    masked, targets = _SplitIndex(mask, users, device), _SplitIndex(target, users, device)
    users_t = torch.from_numpy(users).to(device)
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(users), chunk_size):
        stop = min(start + chunk_size, len(users))
        scores = score_fn(users_t[start:stop]).float()  # [B, n_items]
        if scores._base is not None:  # never write into a caller's tensor
            scores = scores.clone()
        scores.index_put_(masked.chunk(start, stop), torch.tensor(float("-inf"), device=device))
        top = topk_stable(scores, ks[-1])  # [B, min(Kmax, n_items)]
        _check_finite(scores, top)
        hits = _hits(top, *targets.chunk(start, stop), scores.shape[1])
        hits = torch.nn.functional.pad(hits, (0, ks[-1] - hits.shape[1]))  # fewer items than Kmax: no hits past the end
        for key, values in _metrics_from_hits(hits, n_target_all[start:stop], ks).items():
            parts.setdefault(key, []).append(values)
    per_user = {key: torch.cat(vals).cpu().numpy() for key, vals in parts.items()} if parts else {}
    return EvalResult(users=users, per_user=_ordered(per_user, ks))


def _check_finite(scores: torch.Tensor, top: torch.Tensor) -> None:
    """NaN and +inf rank first (torch's order), so one anywhere in a row is in its top-k."""
    best = scores.gather(1, top[:, :1])  # [B, 1]
    if torch.isnan(best).any() or torch.isposinf(best).any():
        raise FloatingPointError("model produced NaN/inf scores during evaluation")


def _ordered(per_user: dict[str, np.ndarray], ks: Sequence[int]) -> dict[str, np.ndarray]:
    keys = [f"{name}@{k}" for name in METRIC_NAMES for k in ks]
    return {key: per_user.get(key, np.zeros(0)) for key in keys}
