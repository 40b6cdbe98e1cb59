"""Labels: method, backbone, dataset and metric names, as tables and plots show them.

Methods and backbones are the registered ones: each objective class carries its
`display_name` (guider/objective.py, guider/denoise/) and so does each backbone class
(guider/models/), and tables list them in registration order. A name the registries do not
know (a run of a plug-in that is not installed here) is shown as it is, after the known ones.
"""

from __future__ import annotations


def _methods() -> dict[str, str]:
    from guider.objective import available_objectives, objective_class

    return {name: objective_class(name).display_name for name in available_objectives()}


def _backbones() -> dict[str, str]:
    from guider.models import get_class, registered

    return {name: get_class(name).display_name or name for name in registered()}


DENOISERS = ("tce", "rce", "damrs")  # the denoising baselines GUIDER is compared with (baselines table)


def display_name(method: str) -> str:
    return _methods().get(method, method)


def method_order(labels) -> list[str]:
    """`labels` sorted in table order (registered methods first, the rest alphabetically)."""
    known = [m for m in _methods() if m in set(labels)]
    return known + sorted(set(labels) - set(known))


_METRIC_SHORT = {"recall": "R", "ndcg": "N", "precision": "P", "map": "MAP"}


DATASETS = ("baby", "sports", "clothing", "microlens")


def canonical_order(names, canonical) -> list[str]:
    """Distinct `names`: those of `canonical` in its order, then the others in first-seen order."""
    distinct = list(dict.fromkeys(names))
    return [n for n in canonical if n in distinct] + [n for n in distinct if n not in canonical]


def backbone_order(names) -> list[str]:
    return canonical_order(names, list(_backbones()))


def dataset_order(names) -> list[str]:
    return canonical_order(names, DATASETS)


def backbone_name(name: str) -> str:
    return _backbones().get(name, name)


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
