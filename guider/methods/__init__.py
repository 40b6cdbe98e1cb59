"""Training methods, each registered by name (the base class and registry: base.py):

- plain training: none (base.py);
- GUIDER and its ablations: paper, no_amsc, no_dbpr, kl_kd, no_kd (guider.py);
- the authors' released behaviour: as_released (as_released.py);
- baselines of Wang et al. (WSDM 2021): tce (tce.py), rce (rce.py);
- DA-MRS (Xv et al., KDD 2024) as a plug-in on MF-BPR, VBPR and LightGCN: damrs_plugin
  (damrs.py; its MMRec form is the backbone `damrs`, guider.models.damrs).

No backbone contains method code: every method wraps the backbone through the model
protocol of guider/models/base.py. Importing this package registers the built-in methods;
`method_class`, `available_methods` and `run_artifacts` are the registry's lookups.
"""

# registration order is the order tables list the methods: GUIDER and its ablations, the
# released code, then the baselines
# isort: off
from guider.methods import guider, as_released, tce, rce, damrs  # noqa: F401  (registration side effect)

# isort: on
from guider.methods.amsc import AMSC, AMSCConfig, Calibration
from guider.methods.base import (
    Batch,
    Evaluator,
    Method,
    NonFiniteLoss,
    NonFiniteWatch,
    register_method,
    registered_method,
    registered_methods,
)
from guider.methods.distill import entropic_ot, kl_distillation, ot_distillation


def method_class(name: str) -> type[Method]:
    """The method registered as `name`; ConfigError naming the available ones otherwise."""
    return registered_method(name)


def available_methods() -> list[str]:
    """Registered method names, in registration order (the order tables list them)."""
    return registered_methods()


def run_artifacts() -> set[str]:
    """Every file name a registered method writes into a run folder (besides the trainer's)."""
    return {name for method in available_methods() for name in method_class(method).artifacts}


__all__ = [
    "AMSC",
    "AMSCConfig",
    "Batch",
    "Calibration",
    "Evaluator",
    "Method",
    "NonFiniteLoss",
    "NonFiniteWatch",
    "available_methods",
    "entropic_ot",
    "kl_distillation",
    "method_class",
    "ot_distillation",
    "register_method",
    "run_artifacts",
]
