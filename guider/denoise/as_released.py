"""`as_released`: what the authors' public code (Neon-Jing/Guider, built on MMRec) does,
reproduced behaviour by behaviour so it can be run side by side with `paper`
(guider-method.md sec. 6). Each quirk below is covered by tests/test_as_released.py.

1. Teacher: a FREEDOM copy (frozen kNN item graph from raw features, 0.1 image + 0.9
   text, k = 20; 2-layer LightGCN with 10 % degree-sensitive edge dropout), built from
   the registered `freedom` backbone with the released GUIDER.yaml values.
2. "Clean" mask: per positive item, the Euclidean distance between two linear projections
   (text -> 64, image -> 64) that are randomly initialised and never trained, min-max
   normalised within the batch; clean if < 0.7. (Called a Sinkhorn distance there; on
   one-point clouds Sinkhorn reduces to this distance.) It ignores the user entirely.
3. Weights: clean samples get the agreement of 64-bit sign hashes of the teacher's user
   embedding and of the projected item features; "noisy" samples keep weight 1. sign()
   has zero gradient, so the hash layers (and projections) get exactly zero gradient and
   stay at their random initialisation although they sit in the teacher's optimiser.
4. Distillation: KL(softmax(teacher full scores) || softmax(student full scores)) over all
   items for the batch's users (duplicates kept), temperature 1; weights from a two-task
   min-norm solver whose second gradient includes the first (the released code calls
   backward twice without zero_grad in between), then w_student >= 0.5, w_kd >= 1e-4.
5. Teacher and student alternate whole epochs (even epochs: teacher; odd: student);
   early stopping never fires (the trainer's default 1000 epochs then all run).

Decisions where the released behaviour had to be pinned down (documented in docs/method.md):
the hash agreement is the fraction of equal bits, (1 + mean(b_u * b_i)) / 2 in [0, 1];
the item hash input is the mean of the two projections; the min-norm solver keeps the
released solver's 0.999 / 0.001 end points and normalises no gradient. For amsc.npz the
clean mask is recomputed over all train rows (min-max over the whole train set).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guider.denoise.amsc import Calibration
from guider.denoise.mgda import flat_gradient, min_norm_two
from guider.denoise.reporting import detection_report, save_amsc, teacher_report
from guider.denoise.teacher import Teacher, TeacherConfig
from guider.objective import Batch, Evaluator, Objective, register_objective
from guider.settings import Section, setting

if TYPE_CHECKING:
    from guider.config import RunConfig


@dataclass(frozen=True)
class ReleasedTeacherConfig(TeacherConfig):
    """The released teacher: a FREEDOM copy with the released GUIDER.yaml values."""

    backbone: str = setting("freedom")  # released code: src/models/guider.py builds a FREEDOM
    model_defaults: ClassVar[dict[str, dict[str, Any]]] = {"freedom": {"knn_k": 20, "dropout": 0.1}}  # GUIDER.yaml


@dataclass(frozen=True)
class ReleasedConfig(Section):
    """The `released` section: the untrained "denoising" layers and the distillation weights."""

    proj_dim: int = setting(64, ge=1)  # released code: text/image -> 64 projections
    hash_bits: int = setting(64, ge=1)  # released code: 64-bit sign hashes
    clean_threshold: float = setting(0.7)  # released code: clean if normalised distance < 0.7
    temperature: float = setting(1.0, gt=0)  # released code: KL over softmax(scores / 1)
    min_student_weight: float = setting(0.5, ge=0, le=1)  # released code: w_student >= 0.5
    min_kd_weight: float = setting(1e-4, ge=0, le=1)  # released code: w_kd >= 1e-4


class ReleasedDenoiser(nn.Module):
    """The released code's projections and hash layers (trained by nothing)."""

    def __init__(self, text_dim: int, image_dim: int, user_dim: int, proj_dim: int, hash_bits: int):
        super().__init__()
        self.text_proj = nn.Linear(text_dim, proj_dim)
        self.image_proj = nn.Linear(image_dim, proj_dim)
        self.user_hash = nn.Linear(user_dim, hash_bits)
        self.item_hash = nn.Linear(proj_dim, hash_bits)

    def distances(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """[B] ||P_t x_t - P_v x_v||_2 of the given items' features."""
        return torch.linalg.vector_norm(self.text_proj(text) - self.image_proj(image), dim=-1)

    def hash_agreement(self, user_emb: torch.Tensor, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """[B] fraction of equal bits of sign(H_u e_u) and sign(H_i (P_t x_t + P_v x_v) / 2)."""
        item = 0.5 * (self.text_proj(text) + self.image_proj(image))  # [B, proj_dim]
        codes_user = torch.sign(self.user_hash(user_emb))  # [B, bits]
        codes_item = torch.sign(self.item_hash(item))  # [B, bits]
        return 0.5 * (1.0 + (codes_user * codes_item).mean(-1))


def minmax_clean(distances: torch.Tensor, threshold: float) -> torch.Tensor:
    """[B] bool: min-max normalised distance < threshold (all clean when the distances are equal)."""
    d = distances.detach()
    span = d.max() - d.min()
    normalised = (d - d.min()) / span if span > 0 else torch.zeros_like(d)
    return normalised < threshold


@register_objective("as_released")
class AsReleasedObjective(Objective):
    display_name = "released code"
    sections = {"teacher": ReleasedTeacherConfig, "released": ReleasedConfig}
    requires_features = "both"  # the released clean mask projects text and image
    early_stopping = False  # the released trainer never stops early
    reads_negatives = True  # the FREEDOM teacher trains with BPR
    artifacts = ("teacher_metrics.json", "amsc.npz", "denoise.json")

    def __init__(self, model, inputs, dataset, config: RunConfig):
        super().__init__(model, inputs, dataset, config)
        if inputs.text_feat is None or inputs.image_feat is None:
            raise ValueError("as_released needs both text and image features (the released clean mask uses both)")
        self.cfg = cfg = config.section("released")
        teacher = config.section("teacher")
        # built before the teacher, from the global random stream, as the released code does
        denoiser = ReleasedDenoiser(
            inputs.text_feat.shape[1],
            inputs.image_feat.shape[1],
            teacher.model.embedding_size,
            cfg.proj_dim,
            cfg.hash_bits,
        )
        self.teacher = Teacher(teacher, inputs, config.seed, extra_modules={"denoiser": denoiser})
        self.denoiser: ReleasedDenoiser = self.teacher.extra["denoiser"]
        self.text, self.image = inputs.text_feat.float(), inputs.image_feat.float()
        self.teacher_scores_emb = None  # frozen teacher embeddings during a student epoch

    @staticmethod
    def is_teacher_epoch(epoch: int) -> bool:
        return epoch % 2 == 0

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        self.teacher.on_epoch_start(epoch)
        self.teacher_scores_emb = None if self.is_teacher_epoch(epoch) else self.teacher.embeddings()

    # --- teacher epochs ----------------------------------------------------------------------
    def sample_weights(self, user_emb: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([B] clean mask, [B] weights): hash agreement where clean, 1 where "noisy"."""
        text, image = self.text[items], self.image[items]
        clean = minmax_clean(self.denoiser.distances(text, image), self.cfg.clean_threshold)
        agreement = self.denoiser.hash_agreement(user_emb, text, image)
        return clean, torch.where(clean, agreement, torch.ones_like(agreement))

    def teacher_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.teacher.model.propagate()
        clean, weights = self.sample_weights(emb.users[batch.users], batch.pos)
        loss = self.teacher.model.loss(batch.users, batch.pos, batch.neg, emb=emb, weights=weights)
        return loss, clean

    # --- student epochs ----------------------------------------------------------------------
    def kd_loss(self, emb, users: torch.Tensor) -> torch.Tensor:
        """KL(softmax(teacher) || softmax(student)) over all items, batch users, batchmean."""
        t = self.cfg.temperature
        teacher = self.teacher.model.scores(self.teacher_scores_emb, users) / t  # [B, n_items]
        student = self.model.scores(emb, users) / t  # [B, n_items]
        return F.kl_div(
            torch.log_softmax(student, -1), torch.log_softmax(teacher, -1), log_target=True, reduction="batchmean"
        )

    def task_gradients(self, loss_student: torch.Tensor, loss_kd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two gradients the released min-norm solver sees: g_student and, because the
        .grad buffers were not zeroed between the two backward calls, g_student + g_kd."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        g_student = flat_gradient(loss_student, params)
        return g_student, g_student + flat_gradient(loss_kd, params)

    def loss_weights(self, loss_student: torch.Tensor, loss_kd: torch.Tensor) -> tuple[float, float]:
        gamma = min_norm_two(*self.task_gradients(loss_student, loss_kd), released_bounds=True)
        return max(gamma, self.cfg.min_student_weight), max(1.0 - gamma, self.cfg.min_kd_weight)

    def step(self, batch: Batch, epoch: int):
        if self.is_teacher_epoch(epoch):
            loss, clean = self.teacher_loss(batch)
            return None, {"loss_teacher": self.teacher.step(loss), "released_clean_ratio": float(clean.float().mean())}
        emb = self.model.propagate()
        loss_student = self.model.loss(batch.users, batch.pos, batch.neg, emb=emb)
        loss_kd = self.kd_loss(emb, batch.users)
        w_student, w_kd = self.loss_weights(loss_student, loss_kd)
        logs = {
            "loss_backbone": float(loss_student.detach()),
            "loss_kd": float(loss_kd.detach()),
            "w_student": w_student,
            "w_kd": w_kd,
        }
        return w_student * loss_student + w_kd * loss_kd, logs

    # --- state and artefacts -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.teacher.load_state_dict(state["teacher"])

    @torch.no_grad()
    def train_row_calibration(self) -> Calibration:
        """The released mask and weights over all train rows (min-max over the train set)."""
        users = torch.as_tensor(np.asarray(self.inputs.train_users), device=self.inputs.device)
        items = torch.as_tensor(np.asarray(self.inputs.train_items), device=self.inputs.device)
        emb = self.teacher.embeddings()
        clean, weights = self.sample_weights(emb.users[users], items)
        distances = self.denoiser.distances(self.text[items], self.image[items])
        return Calibration(~clean, weights, distances, distances.clone())

    def finalize(self, run_dir: Path, evaluate: Evaluator) -> dict[str, Any]:
        run_dir = Path(run_dir)
        teacher = teacher_report(self.teacher, evaluate, run_dir)
        cal = self.train_row_calibration()
        save_amsc(run_dir / "amsc.npz", self.inputs, cal, None, -1)
        denoise = detection_report(
            run_dir / "denoise.json",
            self.dataset,
            self.inputs,
            cal.false_mask,
            None,
            {"detector": "released clean mask (untrained projections)"},
        )
        return {"teacher": teacher, "detection": denoise}
