"""Significance of "with vs without GUIDER" (docs/specification.md, Protocol, "Evaluation").

Two tests per comparison, each Holm-corrected over the comparisons of one table:
- over seeds: a paired t-test on the per-seed means (seed k of one method against
  seed k of the other: same data, same initial randomness);
- over users: a Wilcoxon signed-rank test on the per-user metric, each user's value
  averaged over the seeds first (users are the larger, paired sample).
A test that cannot be computed (fewer than two pairs, all differences zero) gives NaN,
which counts as "not significant" and is left out of the Holm family.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("mean_std of an empty sample")
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return float(values.mean()), std


def paired_ttest(treatment, baseline) -> float:
    """Two-sided p-value of a paired t-test; NaN when undefined."""
    a, b = _pairs(treatment, baseline)
    diff = a - b
    if a.size < 2 or np.allclose(diff, diff[0], rtol=0, atol=1e-15):
        return float("nan")
    return float(stats.ttest_rel(a, b).pvalue)


def wilcoxon(treatment, baseline) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test (zero differences dropped); NaN when undefined."""
    a, b = _pairs(treatment, baseline)
    if np.count_nonzero(a - b) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # "sample too small for exact"
        return float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaNs stay NaN."""
    p = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def _pairs(treatment, baseline) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(treatment, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be 1-D and of equal length, got {a.shape} and {b.shape}")
    return a, b
