"""Denoising plug-ins, each a training objective registered by name (guider/objective.py):

- GUIDER and its ablations: paper, no_amsc, no_dbpr, kl_kd, no_kd (guider.py);
- the authors' released behaviour: as_released (as_released.py);
- baselines of Wang et al. (WSDM 2021): tce (tce.py), rce (rce.py);
- DA-MRS (Xv et al., KDD 2024) as a plug-in on MF-BPR, VBPR and LightGCN: damrs (damrs.py;
  its MMRec form is the backbone guider.models.damrs).

No backbone contains plug-in code: every objective wraps the backbone through the model
protocol of guider/models/base.py.
"""

# registration order is the order tables list the methods: GUIDER and its ablations, the
# released code, then the baselines
# isort: off
from guider.denoise import guider, as_released, tce, rce, damrs  # noqa: F401  (registration side effect)

# isort: on
from guider.denoise.amsc import AMSC, AMSCConfig, Calibration
from guider.denoise.distill import entropic_ot, kl_distillation, ot_distillation

__all__ = ["AMSC", "AMSCConfig", "Calibration", "entropic_ot", "kl_distillation", "ot_distillation"]
