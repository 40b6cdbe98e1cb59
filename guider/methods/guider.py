"""GUIDER as a training objective: AMSC -> DBPR teacher -> OT-guided student, in sync.

Per student batch (specification, Method §4): one teacher step on the batch (DBPR with
AMSC's weights), then the student loss = backbone loss + kd.weight x L_KD against the
*updated*, detached teacher. The student's forward pass (`propagate`) runs once and is
shared by its backbone loss and its KD scores. Variants (sec. 5) are subclasses that only
change what the teacher trains on and which distillation loss is used.

Decisions where the specification is silent (also in docs/method.md):
- KD users: the distinct users of the batch, at most `kd.users` of them drawn at random
  (cost control); each with the positive and negative of its first triple in the batch.
- Candidates: [pos, neg, teacher top `kd.teacher_top` (pos/neg excluded), uniform random].
- L_KD is the entropic OT value <T, M> + eps sum T log T (whose exact gradient is the envelope
  gradient), solved to convergence (`kd.solver: newton`, distill.py; each epoch's log.csv row
  has `ot_iters`, the mean solver iterations per user, and `ot_converged`, the share of users
  whose solve met the tolerance).
- `kd.balance: mgda` weights L_backbone and L_KD by the two-task min-norm solution of
  their gradients (kd.weight is then unused); `kd.weight = 0` skips KD entirely.
- AMSC recalibrates at epochs 0, every, 2 every, ...; S_rec uses the teacher from
  epoch `warmup_epochs` on. Before the first calibration every row is true.
- `kd.refresh_teacher` (default true, as specified): KD uses the teacher's forward after
  its step on this batch. When the teacher's propagate is the same in train and eval mode
  (LightGCN, MF-BPR: `train_propagate_equals_eval`), that post-step forward is taken with
  autograd and reused as the teacher's training forward of the *next* batch (its
  parameters do not change in between), so the refresh costs no extra forward pass and
  the result is identical to a separate eval forward. Other teachers get a separate eval
  forward. false: KD uses the pre-step forward of this batch (the teacher one Adam step
  stale; for teachers whose training forward differs from eval, one forward cheaper).
- The teacher is configured like any model: `teacher.backbone`, `teacher.lr` (its own
  Adam) and `teacher.model.*`, checked against that backbone's own hyper-parameters.
- The teacher reported in teacher_metrics.json is the one saved with the best student
  epoch (the trainer restores the objective state of that epoch before `finalize`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from guider.config.sections import setting
from guider.data.format.dataset import Dataset
from guider.methods.amsc import AMSC, AMSCConfig, Calibration
from guider.methods.base import Batch, Evaluator, Method, register_method
from guider.methods.dbpr import DBPRConfig, dbpr_loss, dbpr_weights
from guider.methods.distill import (
    KD_LOSSES,
    OT_SOLVERS,
    KDConfig,
    OTStats,
    build_candidates,
    kl_distillation,
    ot_distillation,
)
from guider.methods.mgda import flat_gradient, min_norm_two
from guider.methods.reporting import detection_report, save_amsc, teacher_report
from guider.methods.teacher import Teacher, TeacherConfig, mixed_seed
from guider.models.base import Embeddings, ModelInputs, Recommender, gather_rows

if TYPE_CHECKING:
    from guider.config import RunConfig

log = logging.getLogger(__name__)


def unique_first(users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(distinct users [U], index of each one's first triple in the batch [U])."""
    distinct, inverse = torch.unique(users, return_inverse=True)
    positions = torch.arange(len(users), device=users.device)
    first = torch.full((len(distinct),), len(users), device=users.device, dtype=torch.long)
    return distinct, first.scatter_reduce(0, inverse, positions, reduce="amin")


@register_method("paper")
class GuiderObjective(Method):
    """GUIDER as the paper describes it: AMSC + DBPR teacher + OT distillation."""

    display_name = "GUIDER"
    role = "guider"
    sections = {"amsc": AMSCConfig, "teacher": TeacherConfig, "dbpr": DBPRConfig, "kd": KDConfig}
    # the tuning grid (guider.tuning.grids; not inherited by the ablations): 3 x 2 x 2 points around the defaults
    grid = {"kd.weight": (0.05, 0.1, 0.2), "amsc.tau": (0.5, 1.0), "dbpr.false_weight": (0.25, 0.5)}
    requires_features = "any"  # AMSC's similarities come from the item features
    reads_negatives = True  # the teacher's (D)BPR and the KD candidates use them
    artifacts = ("teacher_metrics.json", "amsc.npz", "denoise.json")
    uses_amsc = True  # False: every interaction is true and AMSC never runs
    teacher_uses_dbpr = True  # False: the teacher trains with plain BPR (AMSC only logged)

    def __init__(self, model: Recommender, inputs: ModelInputs, dataset: Dataset, config: RunConfig):
        super().__init__(model, inputs, dataset, config)
        self.amsc_config: AMSCConfig = config.section("amsc")
        self.teacher_config: TeacherConfig = config.section("teacher")
        self.false_weight = config.section("dbpr").false_weight
        self.kd: KDConfig = config.section("kd")
        self.seed = config.seed
        self.device = inputs.device
        n_rows = len(inputs.train_users)
        self.train_users = torch.tensor(np.asarray(inputs.train_users), dtype=torch.long, device=self.device)
        self.train_items = torch.tensor(np.asarray(inputs.train_items), dtype=torch.long, device=self.device)
        self.amsc = self._build_amsc() if self.uses_amsc else None
        self.calibration = _all_true(n_rows, self.device)
        self.calibrated_epoch = -1
        self.false_share = 0.0  # share of train rows currently false (logged)
        self.teacher = Teacher(self.teacher_config, inputs, self.seed)
        self.generator = torch.Generator()
        self._stale_teacher_emb: Embeddings | None = None  # the teacher's last training forward, detached
        self._next_teacher_forward: Embeddings | None = None  # post-step forward, reused by the next step
        self.ot_stats: OTStats | None = None  # the last OT solve's statistics (logged by `step`)

    # --- configuration ---------------------------------------------------------------------
    def _build_amsc(self) -> AMSC:
        return AMSC(
            self.train_users,
            self.train_items,
            self.inputs.n_users,
            self.inputs.text_feat,
            self.inputs.image_feat,
            self.amsc_config,
        )

    # --- per epoch -------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        self.generator.manual_seed(mixed_seed(self.seed, 2, epoch))
        self._next_teacher_forward = None  # the epoch hook may change the teacher's graph
        self.teacher.on_epoch_start(epoch)
        if self.amsc is not None and (epoch % self.amsc_config.every == 0 or self.calibrated_epoch < 0):
            self.recalibrate(epoch)

    def recalibrate(self, epoch: int) -> Calibration:
        """Run AMSC; S_rec from the teacher once `epoch` >= amsc.warmup_epochs."""
        rec = None
        if epoch >= self.amsc_config.warmup_epochs:
            rec = self.teacher.model.item_embeddings(self.teacher.embeddings())
        self.calibration = self.amsc.calibrate(rec)
        self.calibrated_epoch = epoch
        self.false_share = float(self.calibration.false_mask.float().mean())
        log.debug("AMSC at epoch %d: %d false rows", epoch, int(self.calibration.false_mask.sum()))
        return self.calibration

    # --- per batch -------------------------------------------------------------------------
    def step(self, batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        logs = {"loss_teacher": self.teacher_step(batch), "amsc_false_share": self.false_share}
        emb = self.model.propagate()
        loss_backbone = self.model.loss(batch.users, batch.pos, batch.neg, emb=emb)
        logs["loss_backbone"] = loss_backbone.detach()
        if self.kd.weight == 0:
            return loss_backbone, logs
        loss_kd = self.kd_loss(batch, emb)
        logs["loss_kd"] = loss_kd.detach()
        if self.ot_stats is not None:  # per epoch: mean Newton/Sinkhorn iterations per solve, share converged
            logs["ot_iters"] = self.ot_stats.iters.double().mean()
            logs["ot_converged"] = self.ot_stats.converged.double().mean()
            self.ot_stats = None
        gamma = self._backbone_share(loss_backbone, loss_kd)
        if gamma is None:
            return loss_backbone + self.kd.weight * loss_kd, logs
        logs["kd_gamma"] = gamma
        return gamma.float() * loss_backbone + (1.0 - gamma).float() * loss_kd, logs

    def teacher_step(self, batch: Batch) -> torch.Tensor:
        """One DBPR (or BPR) step of the teacher on the batch."""
        weights = None
        if self.teacher_uses_dbpr:
            rows = batch.rows
            weights = dbpr_weights(self.calibration.false_mask[rows], self.calibration.weights[rows], self.false_weight)
        emb = self._next_teacher_forward
        if emb is None:
            emb = self.teacher.model.propagate()
        self._next_teacher_forward = None
        self._stale_teacher_emb = _detached(emb)
        return self.teacher.step(dbpr_loss(self.teacher.model, batch.users, batch.pos, batch.neg, weights, emb=emb))

    def teacher_embeddings_for_kd(self) -> Embeddings:
        """The updated teacher (its forward after this batch's step, detached), or with
        kd.refresh_teacher false the embeddings of its training forward just before the step.

        When the teacher's training forward equals its eval forward, the post-step forward
        runs with autograd and is kept for the next teacher step (see the module docstring)."""
        if not self.kd.refresh_teacher and self._stale_teacher_emb is not None:
            return self._stale_teacher_emb
        if not self.teacher.model.train_propagate_equals_eval:
            return self.teacher.embeddings()
        self._next_teacher_forward = self.teacher.model.propagate()
        return _detached(self._next_teacher_forward)

    def kd_loss(self, batch: Batch, emb: Embeddings) -> torch.Tensor:
        """L_KD between the student (emb, with autograd) and the updated, detached teacher."""
        users, first = unique_first(batch.users)
        if len(users) > self.kd.users:
            pick = torch.randperm(len(users), generator=self.generator)[: self.kd.users].to(users.device)
            users, first = users[pick], first[pick]
        teacher_emb = self.teacher_embeddings_for_kd()
        with torch.no_grad():
            teacher_full = self.teacher.model.scores(teacher_emb, users)  # [U, n_items]
            cands = build_candidates(
                teacher_full,
                batch.pos[first],
                batch.neg[first],
                self.kd.candidates,
                self.kd.teacher_top,
                self.generator,
            )  # [U, K]
            teacher_logits = teacher_full.gather(1, cands)  # [U, K]
        student_logits = self.model.scores(emb, users, cands)  # [U, K]
        if self.kd.loss == "kl":
            return kl_distillation(student_logits, teacher_logits, self.kd.temperature)
        item_emb = gather_rows(self.teacher.model.item_embeddings(teacher_emb), cands)  # [U, K, d]
        stats: list = []
        loss = ot_distillation(
            student_logits, teacher_logits, item_emb, self.kd.temperature, self.kd.eps, self.kd, stats
        )
        self.ot_stats = stats[0]
        return loss

    def _backbone_share(self, loss_backbone: torch.Tensor, loss_kd: torch.Tensor) -> torch.Tensor | None:
        """Min-norm weight of the backbone task (kd.balance mgda; float64 on the device), None
        for fixed weights."""
        if self.kd.balance != "mgda":
            return None
        params = [p for p in self.model.parameters() if p.requires_grad]
        return min_norm_two(flat_gradient(loss_backbone, params), flat_gradient(loss_kd, params))

    # --- state and artefacts -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        cal = self.calibration
        return {
            "teacher": self.teacher.state_dict(),
            "calibrated_epoch": self.calibrated_epoch,
            "calibration": {
                k: getattr(cal, k).detach().cpu().clone() for k in ("false_mask", "weights", "z", "scores")
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.teacher.load_state_dict(state["teacher"])
        self._next_teacher_forward = self._stale_teacher_emb = None
        self.calibrated_epoch = int(state["calibrated_epoch"])
        self.calibration = Calibration(**{k: v.to(self.device) for k, v in state["calibration"].items()})
        self.false_share = float(self.calibration.false_mask.float().mean())

    def finalize(self, run_dir: Path, evaluate: Evaluator) -> dict[str, Any]:
        teacher = teacher_report(self.teacher, evaluate, Path(run_dir))
        confidence = None if self.amsc is None else self.amsc.confidence
        weight = None if self.amsc is None else self.amsc.weight
        save_amsc(Path(run_dir) / "amsc.npz", self.inputs, self.calibration, confidence, self.calibrated_epoch, weight)
        denoise = detection_report(
            Path(run_dir) / "denoise.json",
            self.dataset,
            self.inputs,
            self.calibration.false_mask,
            confidence,
            {
                "detector": "amsc" if self.amsc is not None else "none (all true)",
                "calibrated_epoch": self.calibrated_epoch,
            },
        )
        return {"teacher": teacher, "detection": denoise}


def _detached(emb: Embeddings) -> Embeddings:
    return Embeddings(emb.users.detach(), emb.items.detach(), extras=emb.extras)


def _all_true(n_rows: int, device: torch.device) -> Calibration:
    zeros = torch.zeros(n_rows, device=device)
    return Calibration(
        torch.zeros(n_rows, dtype=torch.bool, device=device),
        torch.full((n_rows,), 0.5, device=device),
        zeros,
        zeros.clone(),
    )


@register_method("no_amsc")
class NoAMSC(GuiderObjective):
    """Every interaction true (AMSC never runs); the teacher trains with plain BPR; OT KD."""

    display_name = "w/o AMSC"
    role = "ablation"
    uses_amsc = False
    teacher_uses_dbpr = False
    requires_features = "none"  # nothing reads the item features


@register_method("no_dbpr")
class NoDBPR(GuiderObjective):
    """AMSC runs and is logged, but the teacher trains with plain BPR; OT KD."""

    display_name = "w/o DBPR"
    role = "ablation"
    teacher_uses_dbpr = False


@dataclass(frozen=True)
class KLConfig(KDConfig):
    """`kd` of the kl_kd ablation: KL(p_T || p_S) instead of OT."""

    loss: str = setting("kl", choices=KD_LOSSES)


@dataclass(frozen=True)
class NoKDConfig(KDConfig):
    """`kd` of the no_kd ablation: the teacher is trained but never used."""

    weight: float = setting(0.0, ge=0)


@register_method("kl_kd")
class KLDistillation(GuiderObjective):
    """GUIDER with KL(p_T || p_S) instead of OT on the same candidates."""

    display_name = "KL instead of OT"
    role = "ablation"
    sections = {**GuiderObjective.sections, "kd": KLConfig}


@register_method("no_kd")
class NoDistillation(GuiderObjective):
    """AMSC + DBPR teacher trained alongside, but never used: kd.weight = 0."""

    display_name = "w/o KD"
    role = "ablation"
    sections = {**GuiderObjective.sections, "kd": NoKDConfig}


@dataclass(frozen=True)
class TruncatedKDConfig(KDConfig):
    """`kd` of truncated_ot: 0.3's solver, 30 Sinkhorn iterations (under-solves GUIDER's OT)."""

    solver: str = setting("truncated", choices=OT_SOLVERS)


@register_method("truncated_ot")
class TruncatedOT(GuiderObjective):
    """GUIDER with the OT solve of 0.3 and before: 30 Sinkhorn iterations instead of a solve to
    convergence (kd.solver truncated). At GUIDER's operating point it acts like a scaled reverse
    KL early in training; kept to measure what solving the OT changes (docs/method.md)."""

    display_name = "GUIDER, 30 Sinkhorn iterations"
    role = "ablation"
    sections = {**GuiderObjective.sections, "kd": TruncatedKDConfig}
