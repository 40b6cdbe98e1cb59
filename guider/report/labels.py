"""Labels: method, backbone, dataset and metric names, as tables and plots show them.

Display names, a method's role (plain, guider, ablation, released, baseline) and the table
order come from the runs themselves: `guider train` records them in metrics.json (`labels`)
and `report collect` copies them into runs.csv (backbone_name, method_name, method_role,
backbone_rank, method_rank), so the report imports no model or method code and a plug-in's
runs are named as the plug-in names them. `learn(runs)` reads them from a runs table (every
table and figure calls it); a name never seen is shown as it is, after the known ones.
"""

from __future__ import annotations

import pandas as pd

_NAMES: dict[str, dict[str, str]] = {"backbone": {}, "method": {}}
_RANKS: dict[str, dict[str, int]] = {"backbone": {}, "method": {}}
_ROLES: dict[str, str] = {}


def learn(runs: pd.DataFrame) -> None:
    """Remember the names, roles and ranks of a runs table (columns written by report collect)."""
    for kind in ("backbone", "method"):
        if f"{kind}_name" in runs.columns:
            pairs = runs[[kind, f"{kind}_name", f"{kind}_rank"]].drop_duplicates(kind)
            _NAMES[kind].update(zip(pairs[kind], pairs[f"{kind}_name"].astype(str)))
            _RANKS[kind].update(zip(pairs[kind], pairs[f"{kind}_rank"].astype(int)))
    if "method_role" in runs.columns:
        _ROLES.update(runs[["method", "method_role"]].drop_duplicates("method").itertuples(index=False, name=None))


def learn_record(record: dict) -> None:
    """Remember the names of a tuning record (guider tune select writes its `labels`)."""
    labels = record.get("labels") or {}
    for kind in ("backbone", "method"):
        name = record.get(kind)
        if name is not None and labels.get(kind):
            _NAMES[kind][name] = str(labels[kind])
            _RANKS[kind][name] = int(labels.get(f"{kind}_rank", 10**6))


def display_name(method: str) -> str:
    return _NAMES["method"].get(method, method)


def role(method: str) -> str:
    """A method's place in the report (guider.methods.base: plain, guider, ablation, released, baseline)."""
    return _ROLES.get(method, "plain" if method == "none" else "other")


def methods_with_role(methods, wanted: str) -> list[str]:
    return [m for m in method_order(methods) if role(m) == wanted]


def _ordered(kind: str, names) -> list[str]:
    distinct = list(dict.fromkeys(names))
    known = sorted((n for n in distinct if n in _RANKS[kind]), key=lambda n: (_RANKS[kind][n], n))
    return known + sorted(n for n in distinct if n not in _RANKS[kind])


def method_order(labels) -> list[str]:
    """`labels` sorted in table order (registration order of the methods, the rest alphabetically)."""
    return _ordered("method", labels)


_METRIC_SHORT = {"recall": "R", "ndcg": "N", "precision": "P", "map": "MAP"}


DATASETS = ("baby", "sports", "clothing", "microlens")


def canonical_order(names, canonical) -> list[str]:
    """Distinct `names`: those of `canonical` in its order, then the others in first-seen order."""
    distinct = list(dict.fromkeys(names))
    return [n for n in canonical if n in distinct] + [n for n in distinct if n not in canonical]


def backbone_order(names) -> list[str]:
    return _ordered("backbone", names)


def dataset_order(names) -> list[str]:
    return canonical_order(names, DATASETS)


def backbone_name(name: str) -> str:
    return _NAMES["backbone"].get(name, name)


def dataset_name(name: str) -> str:
    return {"microlens": "MicroLens"}.get(name, name[:1].upper() + name[1:])


def metric_name(metric: str) -> str:
    """'recall@20' -> 'R@20', 'ndcg@10' -> 'N@10'; unknown names unchanged."""
    base, _, k = metric.partition("@")
    return f"{_METRIC_SHORT[base]}@{k}" if base in _METRIC_SHORT and k else metric


def metric_long_name(metric: str) -> str:
    """'recall@20' -> 'Recall@20', 'ndcg@20' -> 'NDCG@20'."""
    base, _, k = metric.partition("@")
    long = {"recall": "Recall", "ndcg": "NDCG", "precision": "Precision", "map": "MAP"}.get(base, base)
    return f"{long}@{k}" if k else long
