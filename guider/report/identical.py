"""Methods whose runs are identical in every seed and metric, and the footnote that says so.

Two of GUIDER's ablations train exactly what another row trains (guider-method §5, our
docs/specification.md): `no_amsc` and `no_dbpr` give the same student (without AMSC every
interaction counts as true, so DBPR has nothing to down-weight and both teachers train on
BPR), and `no_kd` equals plain training (the teacher never reaches the student's loss or
random stream). Readers who see two equal rows should not suspect a bug, so the ablation
table and figure say so. Found from the numbers, not assumed: a pair is named only where it
ran on the same (dataset, backbone, seed) cells and every test metric agrees; an explanation
is added where one is known.
"""

from __future__ import annotations

import itertools

import pandas as pd

from guider.report.labels import display_name, learn
from guider.report.runs import BASE_DATA

WHY = {
    frozenset({"no_amsc", "no_dbpr"}): "without AMSC every interaction counts as true, so DBPR has nothing to "
    "down-weight and both teachers train on BPR",
    frozenset({"none", "no_kd"}): "the teacher trains beside the student but never reaches its loss or its "
    "random stream",
}


def identical_pairs(runs: pd.DataFrame, methods: list[str], metrics: list[str]) -> list[tuple[str, str]]:
    """Pairs of `methods` (in that order) equal in every shared (dataset, backbone, seed) on every
    test metric of `metrics`, on the base data."""
    learn(runs)
    columns = [f"test.{m}" for m in metrics if f"test.{m}" in runs.columns]
    base = runs[runs["data"] == BASE_DATA].set_index(["dataset", "backbone", "seed"])
    pairs = []
    for a, b in itertools.combinations(methods, 2):
        left, right = base[base["method"] == a][columns], base[base["method"] == b][columns]
        shared = left.index.intersection(right.index)
        if columns and len(shared) and left.loc[shared].sort_index().equals(right.loc[shared].sort_index()):
            pairs.append((a, b))
    return pairs


def footnote(pairs: list[tuple[str, str]]) -> str | None:
    """One sentence per pair: the two rows are identical in every seed, and why where known."""
    if not pairs:
        return None
    sentences = []
    for a, b in pairs:
        why = WHY.get(frozenset({a, b}))
        text = f"{display_name(b)} equals {display_name(a)} in every seed and metric"
        sentences.append(f"{text} by construction: {why}." if why else f"{text}.")
    return " ".join(sentences)
