"""The trainer: sampling, optimisation, per-epoch evaluation, early stopping, checkpoints.

One epoch = the train interactions shuffled into batches, each paired with one uniform
negative (MMRec's protocol). Randomness of epoch e is derived from (seed, e) alone, so a
run resumed from its checkpoint after epoch e continues exactly as an uninterrupted run.
Model selection uses the validation metric only; test metrics are those of the best
validation epoch.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from guider.config import RunConfig, resolve_run_config
from guider.data import TEST, TRAIN, VALID, Dataset, load_dataset
from guider.data.format.fingerprint import dataset_fingerprint
from guider.data.noise import level_of
from guider.engine.device import resolve_device
from guider.engine.feedback import BatchBar, epoch_line
from guider.engine.metrics import EvalResult, evaluate
from guider.engine.optim import adam
from guider.engine.sampling import NegativeSampler
from guider.methods import Batch, Method, NonFiniteLoss, NonFiniteWatch, method_class
from guider.models import ModelInputs, build_model
from guider.runs.atomic import write_json, write_text
from guider.runs.checkpoint import CHECKPOINT_NAME, CheckpointError, save_checkpoint
from guider.runs.provenance import source, versions
from guider.runs.run_dir import hold_run_dir, prepare_run_dir

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """Progress of a run, saved in every checkpoint."""

    epoch: int = 0  # next epoch to run
    best_score: float = float("-inf")
    best_epoch: int = -1
    bad_evals: int = 0
    best_model: dict[str, Any] | None = None
    best_method: dict[str, Any] | None = None
    log_rows: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    stopped_on_nan: int | None = None  # the epoch a non-finite loss ended (methods with stop_on_nan)


def model_inputs(ds: Dataset, device: torch.device) -> ModelInputs:
    """ModelInputs of a dataset: train interactions in table order, features on `device`."""
    users, items = ds.split(TRAIN)

    def tensor(feat):
        return None if feat is None else torch.from_numpy(np.ascontiguousarray(feat)).to(device)

    return ModelInputs(ds.n_users, ds.n_items, users, items, tensor(ds.text_feat), tensor(ds.image_feat), device)


def read_means(totals: dict[str, torch.Tensor | float], n_batches: int) -> dict[str, float]:
    """Per-epoch means of the summed logs, read from the device in one transfer."""
    keys = list(totals)
    tensors = [k for k in keys if isinstance(totals[k], torch.Tensor)]
    values = dict(zip(tensors, torch.stack([totals[k].double() for k in tensors]).tolist())) if tensors else {}
    return {k: float(values.get(k, totals[k])) / max(1, n_batches) for k in keys}


def seed_everything(seed: int, epoch: int) -> torch.Generator:
    """Seed torch for epoch `epoch` of run `seed`; return a generator for epoch-level hooks."""
    value = (int(seed) * 1_000_003 + int(epoch)) % (2**63)
    torch.manual_seed(value)
    return torch.Generator().manual_seed(value)


class Trainer:
    """Trains one backbone with one objective on one dataset into one run directory."""

    def __init__(self, ds: Dataset, run_dir: Path, config: RunConfig, device: torch.device, progress: bool = True):
        self.ds, self.run_dir, self.config, self.device = ds, Path(run_dir), config, device
        self.tcfg = config.train
        self.progress = progress
        self.inputs = model_inputs(ds, device)
        seed_everything(config.seed, -1)
        self.model = build_model(config.backbone, self.inputs, config.model)
        self.method: Method = method_class(config.method)(self.model, self.inputs, ds, config)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = adam(params, lr=self.tcfg.lr, weight_decay=self.tcfg.weight_decay) if params else None
        self.sampler = NegativeSampler(
            self.inputs.train_users, self.inputs.train_items, ds.n_items, candidates=self.method.negative_items()
        )
        self.matrices = {"train": ds.matrix(TRAIN), "valid": ds.matrix(VALID), "test": ds.matrix(TEST)}
        self.state = RunState()
        self._nonfinite = NonFiniteWatch(device)  # renewed every epoch

    # --- evaluation ----------------------------------------------------------------------
    def evaluate_scores(self, score_fn, split: str) -> EvalResult:
        return evaluate(
            score_fn,
            self.matrices[split],
            self.matrices["train"],
            ks=self.tcfg.ks,
            chunk_size=self.tcfg.eval_batch_users,
            device=self.device,
        )

    def evaluate_model(self, split: str) -> EvalResult:
        emb = self.method.eval_embeddings()
        return self.evaluate_scores(lambda users: self.method.scores(emb, users), split)

    def evaluate_means(self, score_fn, split: str) -> dict[str, float]:
        """The `Evaluator` handed to objectives (e.g. to evaluate GUIDER's teacher)."""
        return self.evaluate_scores(score_fn, split).means()

    # --- training ------------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the shuffled train interactions; returns mean logged values."""
        gen = seed_everything(self.config.seed, epoch)
        rng = np.random.default_rng([self.config.seed, epoch])
        self._set_learning_rate(epoch)
        self.model.train()
        self.model.on_epoch_start(epoch, gen)
        self.method.on_epoch_start(epoch, gen)
        order = rng.permutation(len(self.inputs.train_users))
        users = self.inputs.train_users[order]
        # None when nothing reads the negatives (e.g. plain BM3), so a reader fails loudly;
        # sampling is the last use of `rng`, so skipping it changes no other draw
        negs = self.sampler.sample(users, rng) if self.method.needs_negatives else None
        totals: dict[str, torch.Tensor | float] = {}
        n_batches = 0
        self._nonfinite = NonFiniteWatch(self.device)
        bs = self.tcfg.batch_size
        starts = range(0, len(order), bs)
        bar = BatchBar(len(starts), epoch, self.tcfg.epochs, self.progress)
        for start in starts:
            rows = order[start : start + bs]
            batch = self._batch(rows, users[start : start + bs], None if negs is None else negs[start : start + bs])
            logs = self._step(batch, epoch, n_batches)
            for key, value in logs.items():  # float64 sums, as Python floats summed before
                totals[key] = totals.get(key, 0.0) + (value.double() if isinstance(value, torch.Tensor) else value)
            n_batches += 1
            bar.step(logs.get("train_loss"))
        bar.close()
        self._nonfinite.raise_if_seen(
            epoch, "the run stopped (lower train.lr or check the data); " + self._last_checkpoint()
        )
        return read_means(totals, n_batches)

    def _set_learning_rate(self, epoch: int) -> None:
        """train.lr_scheduler, MMRec's LambdaLR: lr x gamma ** (epoch / step), from the epoch alone
        (so a resumed run needs no scheduler state); untouched when gamma is 1."""
        if self.optimizer is None or self.tcfg.lr_scheduler[0] == 1.0:
            return
        for group in self.optimizer.param_groups:
            group["lr"] = self.tcfg.lr * self.tcfg.lr_factor(epoch)

    def _batch(self, rows: np.ndarray, users: np.ndarray, negs: np.ndarray | None) -> Batch:
        def t(a):
            return None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

        return Batch(users=t(users), pos=t(self.inputs.train_items[rows]), neg=t(negs), rows=t(rows))

    def _step(self, batch: Batch, epoch: int, index: int) -> dict[str, torch.Tensor | float]:
        """One optimiser step. Nothing is read back to the host: the logs stay on the device
        and a non-finite loss is noted on the device and reported at the end of the epoch."""
        loss, logs = self.method.step(batch, epoch)
        if loss is None or self.optimizer is None:
            return dict(logs)
        loss_value = loss.detach()
        self._nonfinite.note(loss_value, index)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"train_loss": loss_value, **logs}

    def _last_checkpoint(self) -> str:
        if self.state.epoch == 0:
            return "no epoch finished, so there is no checkpoint to resume"
        return f"last good checkpoint (after epoch {self.state.epoch - 1}): {self.run_dir / CHECKPOINT_NAME}"

    # --- checkpoints ---------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "method": self.method.state_dict(),
            "run": self.state.__dict__,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        """Continue from `saved`, a checkpoint of this very config (guider.runs.run_dir checks that)."""
        path = self.run_dir / CHECKPOINT_NAME
        if saved["config"] != self.config.to_dict():
            raise ValueError(f"{path}: the checkpoint belongs to another config or other data")
        try:
            self.model.load_state_dict(saved["model"])
            if self.optimizer is not None:
                self.optimizer.load_state_dict(saved["optimizer"])
            self.method.load_state_dict(saved["method"] if "method" in saved else saved["objective"])  # <= 0.3
            self.state = RunState(**_renamed_run_state(saved["run"]))
        except (RuntimeError, TypeError, KeyError, ValueError) as err:
            raise CheckpointError(
                f"{path}: does not fit this run ({_first_line(err)}); delete it to start the run afresh"
            ) from None
        log.info("resumed %s at epoch %d", self.run_dir, self.state.epoch)

    # --- the loop ------------------------------------------------------------------------
    def fit(self) -> None:
        epochs = self.tcfg.epochs if self.model.trainable else 0
        while self.state.epoch < epochs and not self.stopped_early() and self.state.stopped_on_nan is None:
            epoch = self.state.epoch
            started = time.perf_counter()
            try:
                logs = self.run_epoch(epoch)
            except NonFiniteLoss as err:
                if not self.method.stop_on_nan:
                    raise
                self._stop_on_nan(epoch, err)
                break
            train_seconds = time.perf_counter() - started
            self.state.train_seconds += train_seconds
            row = {"epoch": epoch, **logs, "train_seconds": train_seconds}
            if (epoch + 1) % self.tcfg.eval_every == 0 or epoch + 1 == epochs:
                row.update(self._validate(epoch))
            self.state.log_rows.append(row)
            seconds = [r["train_seconds"] + r.get("eval_seconds", 0.0) for r in self.state.log_rows[-10:]]
            best = (self.state.best_score, self.state.best_epoch)
            log.info("%s", epoch_line(row, epochs, self.tcfg.valid_metric, best, seconds))
            self.state.epoch = epoch + 1
            save_checkpoint(self.run_dir, self.checkpoint_state())
            self._write_log()
        if self.stopped_early():
            log.info("early stop after epoch %d (best epoch %d)", self.state.epoch - 1, self.state.best_epoch)

    def _stop_on_nan(self, epoch: int, err: NonFiniteLoss) -> None:
        """End training at a non-finite loss, keeping the best evaluated state (the released
        code's behaviour); the checkpoint records it, so a resumed run trains no further."""
        method = self.config.method
        log.warning("%s: training ends at epoch %d with the best result so far (method %s)", err, epoch, method)
        self.state.stopped_on_nan = epoch
        save_checkpoint(self.run_dir, self.checkpoint_state())

    def stopped_early(self) -> bool:
        """Patience evaluations without improvement, past train.min_epochs (never for methods
        that disable early stopping). Checked before each epoch, so a resumed finished run
        trains no further."""
        return (
            self.method.early_stopping
            and self.state.epoch >= self.tcfg.min_epochs
            and self.state.bad_evals >= self.tcfg.patience
        )

    def _validate(self, epoch: int) -> dict[str, float]:
        started = time.perf_counter()
        valid = self.evaluate_model("valid").means()
        score = valid[self.tcfg.valid_metric]
        if score > self.state.best_score:
            self.state.best_score, self.state.best_epoch, self.state.bad_evals = score, epoch, 0
            self.state.best_model = copy.deepcopy(self.model.state_dict())
            self.state.best_method = copy.deepcopy(self.method.state_dict())
        else:
            self.state.bad_evals += 1
        return {"eval_seconds": time.perf_counter() - started, **{f"valid_{k}": v for k, v in valid.items()}}

    def _write_log(self) -> None:
        """log.csv: one row per finished epoch (only the header when no epoch ran)."""
        rows = pd.DataFrame(self.state.log_rows) if self.state.log_rows else pd.DataFrame(columns=["epoch"])
        write_text(self.run_dir / "log.csv", rows.to_csv(index=False))

    def finish(self) -> dict[str, Any]:
        """Restore the best model, evaluate it on valid and test, write the run's artefacts.

        Every output is (re)written here, log.csv included, so a run resumed from the
        checkpoint of its last epoch (killed after it, or its outputs removed by a workflow
        manager) trains no epoch and still ends with all its files."""
        self._write_log()
        if self.state.best_model is not None:
            self.model.load_state_dict(self.state.best_model)
            self.method.load_state_dict(self.state.best_method)
        valid = self.evaluate_model("valid")
        test = self.evaluate_model("test")
        write_text(self.run_dir / "per_user_test.csv", test.to_frame().to_csv(index=False, float_format="%.6g"))
        write_text(self.run_dir / "per_user_valid.csv", valid.to_frame().to_csv(index=False, float_format="%.6g"))
        extra = self.method.finalize(self.run_dir, self.evaluate_means)
        epochs_run = self.state.epoch
        metrics = {
            "dataset": self.ds.name,
            "backbone": self.config.backbone,
            "method": self.config.method,
            "seed": self.config.seed,
            "data_fingerprint": self.config.data_fingerprint,
            "study": study_coordinates(self.ds),
            "labels": run_labels(self.config.backbone, self.config.method),
            "best_epoch": max(self.state.best_epoch, 0),
            "epochs_run": epochs_run,
            "valid": valid.means(),
            "test": test.means(),
            "train_seconds": self.state.train_seconds,
            "seconds_per_epoch": self.state.train_seconds / epochs_run if epochs_run else 0.0,
            "device": str(self.device),
            "versions": versions(),
            **source(),
            **({} if self.state.stopped_on_nan is None else {"stopped_on_nan_at_epoch": self.state.stopped_on_nan}),
            **extra,
        }
        write_json(self.run_dir / "metrics.json", metrics)
        return metrics


def _renamed_run_state(run: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's run state with the names of 0.3 and before (best_objective) renamed."""
    return {("best_method" if key == "best_objective" else key): value for key, value in run.items()}


def study_coordinates(ds: Dataset) -> dict[str, Any]:
    """Where the run sits in a study: the dataset's name, its data level (base or a noisy copy's
    folder name, from dataset.json's noise record), the noise kind and ratio (None: no ratio)."""
    level, kind, ratio = level_of(ds.meta)
    return {"dataset": ds.name, "data": level, "noise_kind": kind, "noise_ratio": None if ratio != ratio else ratio}


def run_labels(backbone: str, method: str) -> dict[str, Any]:
    """How tables name and order the run: display names, the method's role in the report, and
    the registration order of both (the order the paper's tables list them)."""
    from guider.methods import available_methods
    from guider.models import get_class, registered

    chosen = method_class(method)
    return {
        "backbone": get_class(backbone).display_name or backbone,
        "method": chosen.display_name,
        "method_role": chosen.role,
        "backbone_rank": registered().index(backbone),
        "method_rank": available_methods().index(method),
    }


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def use_run_determinism(device: torch.device) -> None:
    """What every training run sets before it starts (benchmarks call it too, so they time
    the same kernels): deterministic algorithms on CPU (warn-only where none exists)."""
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    backbone: str,
    *,
    method: str = "none",
    seed: int = 0,
    device: str | None = None,
    config_file: str | Path | None = None,
    sets: list[str] | tuple[str, ...] = (),
    epochs: int | None = None,
    patience: int | None = None,
    resume: bool | str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate; write config.json, log.csv, checkpoint.pt, per_user_*.csv, metrics.json.

    Every setting is checked before the data is read; `resume`: None/False (refuse a folder
    holding a run), True/'auto' or 'strict' (see guider.runs.run_dir)."""
    config = resolve_run_config(
        backbone, method=method, seed=seed, config_file=config_file, sets=sets, epochs=epochs, patience=patience
    )
    ds = load_dataset(data_dir)
    config = config.with_data(ds.name, dataset_fingerprint(ds))
    dev = resolve_device(device)
    use_run_determinism(dev)
    trainer = Trainer(ds, Path(out_dir), config, dev, progress=progress)  # writes nothing yet
    mode = "auto" if resume is True else (None if resume in (False, None) else resume)
    with hold_run_dir(out_dir):  # one writer per folder, from here to the last file
        saved = prepare_run_dir(out_dir, config.to_dict(), mode)  # only now may old run files go
        if saved is not None:
            trainer.restore(saved)
        described = {"data": str(data_dir), "device": str(dev), "study": study_coordinates(ds)}
        write_json(
            Path(out_dir) / "config.json", {**config.to_dict(), **described, "labels": run_labels(backbone, method)}
        )
        trainer.fit()
        return trainer.finish()
