"""Labels: method names (the (variant, denoise) pair of a run), backbone, dataset and metric
names, as tables and plots show them.

A run trains a backbone either with a GUIDER variant (`--variant`) or with a denoising
baseline (`--denoise`), never both; the method label is whichever of the two is set.
"""

from __future__ import annotations

# label -> (variant, denoise, display name), in the order tables list them
METHODS: dict[str, tuple[str, str, str]] = {
    "none": ("none", "none", "plain"),
    "paper": ("paper", "none", "GUIDER"),
    "no_amsc": ("no_amsc", "none", "w/o AMSC"),
    "no_dbpr": ("no_dbpr", "none", "w/o DBPR"),
    "kl_kd": ("kl_kd", "none", "KL instead of OT"),
    "no_kd": ("no_kd", "none", "w/o KD"),
    "as_released": ("as_released", "none", "released code"),
    "tce": ("none", "tce", "T-CE"),
    "rce": ("none", "rce", "R-CE"),
}


def method_label(variant: str, denoise: str) -> str:
    """'paper' for (paper, none), 'tce' for (none, tce); ValueError for unknown pairs."""
    for label, (v, d, _) in METHODS.items():
        if (v, d) == (variant, denoise):
            return label
    raise ValueError(f"unknown method: variant {variant!r} with denoise {denoise!r}")


def display_name(label: str) -> str:
    return METHODS[label][2] if label in METHODS else label


def method_order(labels) -> list[str]:
    """`labels` sorted in table order (known methods first, the rest alphabetically)."""
    known = [m for m in METHODS if m in set(labels)]
    return known + sorted(set(labels) - set(METHODS))


# display names, in the order of the paper's tables
BACKBONES = {
    "bpr": "BPR",
    "lightgcn": "LightGCN",
    "vbpr": "VBPR",
    "freedom": "FREEDOM",
    "bm3": "BM3",
    "lattice": "LATTICE",
    "pop": "MostPop",
}
_METRIC_SHORT = {"recall": "R", "ndcg": "N", "precision": "P", "map": "MAP"}


DATASETS = ("baby", "sports", "clothing", "microlens")


def canonical_order(names, canonical) -> list[str]:
    """Distinct `names`: those of `canonical` in its order, then the others in first-seen order."""
    distinct = list(dict.fromkeys(names))
    return [n for n in canonical if n in distinct] + [n for n in distinct if n not in canonical]


def backbone_order(names) -> list[str]:
    return canonical_order(names, list(BACKBONES))


def dataset_order(names) -> list[str]:
    return canonical_order(names, DATASETS)


def backbone_name(name: str) -> str:
    return BACKBONES.get(name, name)


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
