"""`as_released`: what the authors' public code (Neon-Jing/Guider at 5aaf514, built on
MMRec) does, reproduced behaviour by behaviour so it can be run side by side with `paper`
(specification, Method §6). Each quirk is covered by tests/test_as_released.py; the file
and line each follows are in docs/method.md.

1. Teacher: a FREEDOM copy (frozen kNN item graph from raw features, 0.1 image + 0.9
   text, k = 20; 2-layer LightGCN with 10 % degree-sensitive edge dropout), built from
   the registered `freedom` backbone with the released GUIDER.yaml values.
2. Epoch schedule (`_train_epoch` in src/common/trainer.py): every epoch one full teacher
   pass over the training data (its own loss, Adam, shuffle and negatives: the released
   code gives the teacher its own data loader), then one full student pass with the KL
   term against the teacher in eval mode. The teacher pass runs in `on_epoch_start`.
3. "Clean" mask: per positive item, the Euclidean distance between the text and image
   projections (-> 64) that are randomly initialised and never trained, min-max
   normalised within the batch; clean if < 0.7. (Called a Sinkhorn distance there; on
   one-point clouds Sinkhorn reduces to this distance.) It ignores the user entirely.
4. Weights: a clean sample gets the mean of two 64-bit sign-hash agreements, user hash vs
   text hash and user hash vs image hash (separate hash layers per modality); "noisy"
   samples keep weight 1. sign() has zero gradient, so the hash layers (and projections)
   get exactly zero gradient and stay random although they sit in the teacher's
   optimiser. The teacher's loss is the weighted BPR terms only (its regulariser and
   modality terms are commented out there). With a modality missing there is no mask:
   the teacher trains on unweighted BPR.
5. Distillation: KL(softmax(teacher full scores) || softmax(student full scores)) over all
   items for the batch's users (duplicates kept), temperature 1. The student's scores come
   from a separate forward on its full graph (`full_sort_predict`), not from its training
   forward on the pruned graph; the teacher's scores from its eval-mode full forward. The
   released code recomputes the teacher's forward on every student batch; its parameters
   do not change during the student pass, so we compute it once per pass (same values).
   Loss weights from a two-task min-norm solver whose second gradient includes the first
   (backward twice without zero_grad in between), then w_student >= 0.5, w_kd >= 1e-4.
6. Cadence: evaluation every 5 epochs (`eval_step: 5`), 1000 epochs, early stopping never
   fires (the released trainer passes `self.cur_step`, which stays 0); a NaN loss ends
   training keeping the best result so far. Set through `run_defaults`, so a user's
   `train.*` settings still win.
7. Student settings: the released configs' values for the students it ships (FREEDOM
   knn_k 20, dropout 0.1; BM3 cl_weight 0.01, dropout 0.1, reg_weight grid [0.001, 0.1];
   VBPR reg_weight grid [1e-4, 1e-5]), unless the user overrides them. Where the released
   config gives a grid, the first point is trained and the grid is recorded in
   metrics.json with the released choice rule (best *test* Recall@20, seed 999). The
   released repository has no BPR or LightGCN model: on those students the run is our
   extrapolation and says so.
8. Negatives (student's and teacher's) are drawn among the items seen in training, as the
   released loader draws them (`TrainDataLoader.all_items`).

Where we differ from the released code (none changes what is computed): the min-norm
solver gets the two flat gradients from torch.autograd.grad (the same values the two
.grad snapshots hold); a student in eval mode gives the full-graph forward, which for
backbones whose training forward uses dropout layers disables them (the released code
calls full_sort_predict in train mode; for FREEDOM, BM3 and VBPR the two coincide);
random streams are ours (the teacher's are forked from the run seed). For amsc.npz the
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

from guider.config.sections import Section, setting
from guider.engine.sampling import NegativeSampler
from guider.methods.amsc import Calibration
from guider.methods.base import Batch, Evaluator, Method, NonFiniteWatch, register_method
from guider.methods.mgda import flat_gradient, min_norm_two
from guider.methods.reporting import detection_report, save_amsc, teacher_report
from guider.methods.teacher import Teacher, TeacherConfig, mixed_seed

if TYPE_CHECKING:
    from guider.config import RunConfig

# the released cadence (src/configs/overall.yaml): 1000 epochs, evaluation every 5
RELEASED_TRAIN = {"epochs": 1000, "eval_every": 5}
# the released students' settings (src/configs/model/<Model>.yaml): fixed values, and grids
RELEASED_STUDENT_SETTINGS: dict[str, dict[str, Any]] = {
    "freedom": {"knn_k": 20, "dropout": 0.1, "reg_weight": 1e-4},  # FREEDOM.yaml
    "bm3": {"n_layers": 1, "dropout": 0.1, "cl_weight": 0.01, "reg_weight": 0.001},  # BM3.yaml, grid's first point
    "vbpr": {"reg_weight": 1e-4},  # VBPR.yaml, grid's first point
}
RELEASED_STUDENT_GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "bm3": {"model.reg_weight": (0.001, 0.1)},
    "vbpr": {"model.reg_weight": (1e-4, 1e-5)},
}
# students the released repository ships (src/models/); others are our extrapolation
RELEASED_STUDENTS = frozenset(
    {"bm3", "dragon", "dualgnn", "freedom", "grcn", "lattice", "lgmrec", "mgcn", "mmgcn", "slmrec", "smore", "vbpr"}
)
RELEASED_CHOICE_RULE = (
    "src/utils/quick_start.py trains every grid point with seed 999 and keeps the one with the best "
    "test Recall@20 (selection on the test split)"
)


@dataclass(frozen=True)
class ReleasedTeacherConfig(TeacherConfig):
    """The released teacher: a FREEDOM copy with the released GUIDER.yaml values."""

    backbone: str = setting("freedom")  # released code: src/models/guider.py builds a FREEDOM
    model_defaults: ClassVar[dict[str, dict[str, Any]]] = {"freedom": {"knn_k": 20, "dropout": 0.1}}  # GUIDER.yaml


@dataclass(frozen=True)
class ReleasedConfig(Section):
    """The `released` section: the untrained "denoising" layers and the distillation weights."""

    proj_dim: int = setting(64, ge=1)  # released code: text/image -> 64 projections (feat_embed_dim)
    hash_bits: int = setting(64, ge=1)  # released code: 64-bit sign hashes
    clean_threshold: float = setting(0.7)  # released code: clean if normalised distance < 0.7
    temperature: float = setting(1.0, gt=0)  # released code: KL over softmax(scores / 1)
    min_student_weight: float = setting(0.5, ge=0, le=1)  # released code: w_student >= 0.5
    min_kd_weight: float = setting(1e-4, ge=0, le=1)  # released code: w_kd >= 1e-4


class ReleasedDenoiser(nn.Module):
    """The released teacher's projections and hash layers (trained by nothing): one
    projection and one hash layer per modality, one user hash layer."""

    def __init__(self, text_dim: int, image_dim: int, user_dim: int, proj_dim: int, hash_bits: int):
        super().__init__()
        self.text_proj = nn.Linear(text_dim, proj_dim)
        self.image_proj = nn.Linear(image_dim, proj_dim)
        self.text_hash = nn.Linear(proj_dim, hash_bits)
        self.image_hash = nn.Linear(proj_dim, hash_bits)
        self.user_hash = nn.Linear(user_dim, hash_bits)

    def distances(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """[B] ||P_t x_t - P_v x_v||_2 of the given items' features."""
        return torch.linalg.vector_norm(self.text_proj(text) - self.image_proj(image), dim=-1)

    def hash_agreement(self, user_emb: torch.Tensor, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """[B] mean over the two modalities of (1 + <sign(H_u e_u), sign(H_m P_m x_m)> / bits) / 2."""
        codes_user = torch.sign(self.user_hash(user_emb))  # [B, bits]
        codes_text = torch.sign(self.text_hash(self.text_proj(text)))  # [B, bits]
        codes_image = torch.sign(self.image_hash(self.image_proj(image)))  # [B, bits]
        agree_text = 0.5 * (1.0 + (codes_user * codes_text).mean(-1))  # [B]
        agree_image = 0.5 * (1.0 + (codes_user * codes_image).mean(-1))  # [B]
        return (0.5 * (agree_text + agree_image)).clamp(0.0, 1.0)


def minmax_clean(distances: torch.Tensor, threshold: float) -> torch.Tensor:
    """[B] bool: min-max normalised distance < threshold (all clean when the distances are equal)."""
    d = distances.detach()
    span = d.max() - d.min()
    normalised = torch.where(span > 0, (d - d.min()) / (span + 1e-7), torch.zeros_like(d))  # no host read
    return normalised < threshold


@register_method("as_released")
class AsReleasedObjective(Method):
    display_name = "released code"
    role = "released"
    sections = {"teacher": ReleasedTeacherConfig, "released": ReleasedConfig}
    requires_features = "any"  # the FREEDOM teacher needs one modality; the mask needs both, else weights are 1
    early_stopping = False  # the released trainer never stops early
    stop_on_nan = True  # the released trainer ends at a NaN loss and keeps the best result
    reads_negatives = True  # the student's BPR terms in the min-norm solve
    artifacts = ("teacher_metrics.json", "amsc.npz", "denoise.json")

    @classmethod
    def run_defaults(cls, backbone: str) -> dict[str, dict[str, Any]]:
        return {"train": dict(RELEASED_TRAIN), "model": dict(RELEASED_STUDENT_SETTINGS.get(backbone, {}))}

    def __init__(self, model, inputs, dataset, config: RunConfig):
        super().__init__(model, inputs, dataset, config)
        self.cfg = cfg = config.section("released")
        teacher = config.section("teacher")
        both = inputs.text_feat is not None and inputs.image_feat is not None
        extra = {}
        if both:  # built before the teacher, from the global random stream, as the released code does
            extra["denoiser"] = ReleasedDenoiser(
                inputs.text_feat.shape[1],
                inputs.image_feat.shape[1],
                teacher.model.embedding_size,
                cfg.proj_dim,
                cfg.hash_bits,
            )
        self.teacher = Teacher(teacher, inputs, config.seed, extra_modules=extra)
        self.denoiser: ReleasedDenoiser | None = self.teacher.extra["denoiser"] if both else None
        self.text = None if inputs.text_feat is None else inputs.text_feat.float()
        self.image = None if inputs.image_feat is None else inputs.image_feat.float()
        self.seen_items = np.unique(np.asarray(inputs.train_items, dtype=np.int64))
        self.teacher_sampler = NegativeSampler(
            np.asarray(inputs.train_users), np.asarray(inputs.train_items), inputs.n_items, self.seen_items
        )
        self.teacher_scores_emb = None  # the teacher's eval-mode embeddings for the current student pass
        self.teacher_logs: dict[str, float] = {}

    def negative_items(self) -> np.ndarray:
        return self.seen_items  # the released loader samples among the items of the train split

    # --- the teacher pass ----------------------------------------------------------------------
    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        self.teacher.on_epoch_start(epoch)  # its pre_epoch_processing (FREEDOM's edge pruning)
        self.teacher_logs = self.teacher_pass(epoch)
        self.teacher.model.eval()
        self.teacher_scores_emb = self.teacher.embeddings()

    def teacher_batches(self, epoch: int):
        """The teacher's own loader: its own shuffle and negatives, from its own random stream."""
        rng = np.random.default_rng(mixed_seed(self.config.seed, 2, epoch))
        n = len(self.inputs.train_users)
        order = rng.permutation(n)
        users_all = np.asarray(self.inputs.train_users)[order]
        items_all = np.asarray(self.inputs.train_items)[order]
        negs = self.teacher_sampler.sample(users_all, rng)
        size = self.config.train.batch_size

        def part(array: np.ndarray, start: int) -> torch.Tensor:
            return torch.as_tensor(array[start : start + size], device=self.inputs.device)

        for start in range(0, n, size):
            yield Batch(part(users_all, start), part(items_all, start), part(negs, start), part(order, start))

    def teacher_pass(self, epoch: int) -> dict[str, float]:
        """One full pass of the teacher over the training data; mean loss and clean ratio."""
        self.teacher.model.train()
        losses, clean_ratios = [], []
        watch = NonFiniteWatch(self.inputs.device, what="teacher")
        devices = [self.inputs.device] if self.inputs.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the student's random stream stays untouched
            torch.manual_seed(mixed_seed(self.config.seed, 3, epoch))
            for index, batch in enumerate(self.teacher_batches(epoch)):
                loss, clean = self.teacher_loss(batch)
                watch.note(loss, index)
                losses.append(self.teacher.step(loss))
                clean_ratios.append(clean.float().mean())
        watch.raise_if_seen(epoch)
        if not losses:
            return {"loss_teacher": float("nan"), "released_clean_ratio": float("nan")}
        mean_loss, mean_clean = torch.stack([torch.stack(v).double().mean() for v in (losses, clean_ratios)]).tolist()
        return {"loss_teacher": mean_loss, "released_clean_ratio": mean_clean}

    def sample_weights(self, user_emb: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([B] clean mask, [B] weights): hash agreement where clean, 1 where "noisy" (or no mask)."""
        if self.denoiser is None:
            ones = torch.ones(len(items), device=user_emb.device)
            return torch.zeros(len(items), dtype=torch.bool, device=user_emb.device), ones
        text, image = self.text[items], self.image[items]
        clean = minmax_clean(self.denoiser.distances(text, image), self.cfg.clean_threshold)
        agreement = self.denoiser.hash_agreement(user_emb, text, image)
        return clean, torch.where(clean, agreement, torch.ones_like(agreement))

    def teacher_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """-mean(w * log sigmoid(s_ui - s_uj)) on the teacher's training forward: the weighted BPR
        terms only (no regulariser, no modality term, as in the released teacher)."""
        emb = self.teacher.model.propagate()
        pair = self.teacher.model.scores(emb, batch.users, torch.stack([batch.pos, batch.neg], 1))  # [B, 2]
        bpr = F.logsigmoid(pair[:, 0] - pair[:, 1])  # [B]
        clean, weights = self.sample_weights(emb.users[batch.users], batch.pos)
        return -(weights * bpr).mean(), clean

    # --- the student pass ----------------------------------------------------------------------
    def full_graph_embeddings(self, emb):
        """The student's full-graph forward with autograd (the released `full_sort_predict`):
        a second forward in eval mode when the training forward differs from it."""
        if self.model.train_propagate_equals_eval:
            return emb
        self.model.eval()
        try:
            return self.model.propagate()
        finally:
            self.model.train()

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

    def loss_weights(self, loss_student: torch.Tensor, loss_kd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(student weight, KD weight): 0-dim float32 tensors on the device (no host read)."""
        gamma = min_norm_two(*self.task_gradients(loss_student, loss_kd), released_bounds=True)
        w_student, w_kd = gamma.clamp_min(self.cfg.min_student_weight), (1.0 - gamma).clamp_min(self.cfg.min_kd_weight)
        return w_student.float(), w_kd.float()

    def step(self, batch: Batch, epoch: int):
        emb = self.model.propagate()
        loss_student = self.model.loss(batch.users, batch.pos, batch.neg, emb=emb)  # a NaN: the trainer stops
        loss_kd = self.kd_loss(self.full_graph_embeddings(emb), batch.users)
        w_student, w_kd = self.loss_weights(loss_student, loss_kd)
        logs = {
            **self.teacher_logs,
            "loss_backbone": loss_student.detach(),
            "loss_kd": loss_kd.detach(),
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
        users = torch.tensor(np.asarray(self.inputs.train_users), device=self.inputs.device)
        items = torch.tensor(np.asarray(self.inputs.train_items), device=self.inputs.device)
        emb = self.teacher.embeddings()
        clean, weights = self.sample_weights(emb.users[users], items)
        if self.denoiser is None:
            distances = torch.zeros(len(items), device=items.device)
        else:
            distances = self.denoiser.distances(self.text[items], self.image[items])
        return Calibration(~clean, weights, distances, distances.clone())

    def released_record(self) -> dict[str, Any]:
        """How this run relates to the released code's own runs (metrics.json `released`)."""
        backbone = self.config.backbone
        record: dict[str, Any] = {
            "student_released": backbone in RELEASED_STUDENTS,
            "student_settings": RELEASED_STUDENT_SETTINGS.get(backbone, {}),
            "grid": {key: list(values) for key, values in RELEASED_STUDENT_GRIDS.get(backbone, {}).items()},
            "released_choice_rule": RELEASED_CHOICE_RULE,
            "this_run": "one grid point (the first) with this run's seed; no test-set selection",
        }
        if backbone not in RELEASED_STUDENTS:
            record["note"] = (
                f"the released repository has no {backbone} model: this as_released run is an extrapolation "
                "of the released training procedure to a student it never ran"
            )
        return record

    def finalize(self, run_dir: Path, evaluate: Evaluator) -> dict[str, Any]:
        run_dir = Path(run_dir)
        teacher = teacher_report(self.teacher, evaluate, run_dir)
        cal = self.train_row_calibration()
        save_amsc(run_dir / "amsc.npz", self.inputs, cal, None, -1)
        detector = "released clean mask (untrained projections)" if self.denoiser else "none (a modality is missing)"
        denoise = detection_report(
            run_dir / "denoise.json", self.dataset, self.inputs, cal.false_mask, None, {"detector": detector}
        )
        return {"teacher": teacher, "detection": denoise, "released": self.released_record()}
