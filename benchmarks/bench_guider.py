"""Seconds per training epoch: plain backbone vs GUIDER (`paper`), measured in the same run.

    python benchmarks/bench_guider.py                       # synthetic `baby` preset, all backbones
    python benchmarks/bench_guider.py --data DIR --backbones lightgcn,freedom --epochs 3

For each backbone both trainers are built on the same data and their epochs alternate
(plain, paper, plain, paper, ...) after one warm-up epoch each, so machine load hits both
alike; the medians are compared. `--steps N` times only the first N batches of each
epoch (after 2 warm-up batches) and extrapolates to a whole epoch, for slow machines.
AMSC runs once every `amsc.every` epochs, so its cost
is measured on its own (with the teacher's S_rec, the post-warm-up case) and amortised:
paper s/epoch = median timed epoch + AMSC / every. The GUIDER step is split into AMSC,
teacher (DBPR step, post-update forward), candidates (teacher top-k), OT (cost matrix + Sinkhorn)
and the rest (student forward/backward/Adam, sampling), by timing those calls.

"KD/plain" is the distillation's own cost: GUIDER's epoch minus the plain epoch, the
teacher's training (its DBPR step and the post-step forward that the next step reuses) and
AMSC, as a fraction of the plain epoch (issue target: <= 20 %). `--before` also times, in the
same alternation, a third trainer on the former KD paths (`former_kd_paths`: the top-k on a
masked copy of the teacher's scores, candidate rows gathered by plain indexing, the Sinkhorn
value from the full plan) and prints its ratio and KD/plain next to the current ones.

The main ratio is the training pass only. A run also evaluates the student on the valid
split after every epoch (`train.eval_every` 1), which costs plain and GUIDER the same; the
last columns give that evaluation's seconds and the ratio of whole epochs (train + eval).

Without --data the synthetic baby preset (19,445 users, 7,050 items, 20 % injected noise)
is generated into results/tmp/bench_baby; --random-features skips the text/image encoders
there and uses Gaussian features of the same sizes (384 / 1280), which cost the same.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from guider.config import resolve_run_config
from guider.data import load_dataset
from guider.engine.trainer import Trainer, use_run_determinism
from guider.methods import distill
from guider.methods import guider as guider_objective
from guider.models import available, get_class
from guider.models import base as model_base
from guider.runs.atomic import write_text

DEFAULT_DATA = Path("results/tmp/bench_baby")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset folder (default: synthetic baby preset, generated once)")
    parser.add_argument("--backbones", help="comma-separated (default: every trainable registered backbone)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per trainer (after one warm-up)")
    parser.add_argument(
        "--steps",
        type=int,
        default=0,
        help="time only the first STEPS batches of each timed epoch and extrapolate "
        "(s/epoch = per-epoch overhead + batches x median step); 0 = whole epochs",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the issue's numbers: 2 cores)")
    parser.add_argument("--method", default="paper", help="the method timed against plain training")
    parser.add_argument(
        "--before",
        action="store_true",
        help="also time the former KD paths (masked top-k, plain-indexing gather, plan value)",
    )
    parser.add_argument(
        "--random-features",
        action="store_true",
        help="skip the encoders when generating data; Gaussian features for a folder without any",
    )
    parser.add_argument(
        "--costs-out",
        type=Path,
        help="write the cost table `guider plan` reads (backbone, method, device, s/epoch, s/eval) to this CSV",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for both trainers' sections, e.g. kd.users=64",
    )
    return parser.parse_args(argv)


def baby_dataset(path: Path, random_features: bool) -> Path:
    """The synthetic baby preset with 20 % popularity noise, generated once into `path`."""
    if (path / "dataset.json").exists():
        return path
    from guider.data.synthetic import make_synthetic

    make_synthetic(path, preset="baby", noise_ratio=0.2, seed=0, encode=not random_features)
    if random_features:
        rng = np.random.default_rng(0)
        n_items = load_dataset(path).n_items
        np.save(path / "text_feat.npy", rng.normal(size=(n_items, 384)).astype(np.float32))
        np.save(path / "image_feat.npy", rng.normal(size=(n_items, 1280)).astype(np.float32))
    return path


class StepTimer:
    """Accumulates wall time spent inside selected functions while installed."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._undo = []

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def remove(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def trainer_for(ds, backbone: str, method: str, sets: list[str], run_dir: Path) -> Trainer:
    own = [s for s in sets if s.split(".", 1)[0] in ("model", "train")] if method == "none" else sets
    config = resolve_run_config(backbone, method=method, sets=own)
    return Trainer(ds, run_dir, config, torch.device("cpu"), progress=False)


class _Enough(Exception):
    """Raised inside a trainer step to end a partial epoch."""


def time_epoch(trainer: Trainer, epoch: int, steps: int = 0) -> tuple[float, list[float]]:
    """(seconds outside the steps: epoch hooks, sampling, batching; seconds of each step).

    With `steps` > 0 the epoch is cut after that many batches."""
    times: list[float] = []
    step = trainer._step

    def timed(batch, ep, index):
        if steps and len(times) >= steps:
            raise _Enough
        started = time.perf_counter()
        try:
            return step(batch, ep, index)
        finally:
            times.append(time.perf_counter() - started)

    trainer._step = timed
    started = time.perf_counter()
    try:
        trainer.run_epoch(epoch)
    except _Enough:
        pass
    finally:
        del trainer._step  # back to the class's method
    return time.perf_counter() - started - sum(times), times


def epoch_seconds(runs: list[tuple[float, list[float]]], n_batches: int) -> float:
    """Median whole-epoch time, or for partial epochs overhead + n_batches x median step."""
    overhead = statistics.median(r[0] for r in runs)
    if all(len(r[1]) >= n_batches for r in runs):
        return statistics.median(r[0] + sum(r[1]) for r in runs)
    return overhead + n_batches * statistics.median(t for r in runs for t in r[1])


@contextlib.contextmanager
def former_kd_paths():
    """The KD paths this suite used before the distillation was reworked: the teacher's top
    items by masking pos/neg in a copy of its scores, the candidates' rows gathered by
    `table[index]` (student scores and teacher embeddings), and the Sinkhorn value from the
    full [U, K, K] plan (POT's formula). Each was replaced by a bit-identical or tested path
    (tests/test_ot.py, tests/test_models.py, tests/test_sinkhorn.py)."""

    def masked_copy_top(scores, pos, neg, n_top):
        masked = scores.clone()
        rows = torch.arange(len(scores), device=scores.device)
        masked[rows, pos] = float("-inf")
        masked[rows, neg] = float("-inf")
        return masked.topk(n_top, dim=1).indices

    def plain_indexing(table, index):
        return table[index]

    saved = distill.sinkhorn_batch, distill._top_excluding, model_base.gather_rows, guider_objective.gather_rows
    distill.sinkhorn_batch = functools.partial(saved[0], plan_value=True)
    distill._top_excluding = masked_copy_top
    model_base.gather_rows = guider_objective.gather_rows = plain_indexing
    try:
        yield
    finally:
        distill.sinkhorn_batch, distill._top_excluding, model_base.gather_rows, guider_objective.gather_rows = saved


class GuidedRun:
    """One GUIDER trainer, its timed epochs and the seconds of its teacher / OT calls."""

    def __init__(self, trainer: Trainer, paths=contextlib.nullcontext):
        self.trainer, self.paths, self.runs = trainer, paths, []
        self.timer = StepTimer()

    def time_epoch(self, epoch: int, steps: int) -> None:
        with self.paths():
            timer = self.timer
            timer.wrap(self.trainer.method, "teacher_step", "teacher")
            timer.wrap(self.trainer.method, "teacher_embeddings_for_kd", "teacher")
            timer.wrap(guider_objective, "build_candidates", "candidates")
            timer.wrap(distill, "entropic_ot", "ot")
            timer.wrap(distill, "cosine_cost", "ot")
            try:
                self.runs.append(time_epoch(self.trainer, epoch, steps))
            finally:
                timer.remove()

    def summary(self, plain_s: float, n_batches: int) -> dict[str, float]:
        """s/epoch (AMSC amortised), shares of the epoch, and KD/plain (module docstring)."""
        amsc_seconds, every = amsc_cost(self.trainer)
        guided_s = epoch_seconds(self.runs, n_batches) + amsc_seconds / every
        timed_total = sum(r[0] + sum(r[1]) for r in self.runs)
        scale = (guided_s - amsc_seconds / every) / (timed_total / len(self.runs))  # timed part -> one epoch
        per_epoch = {k: v / len(self.runs) * scale for k, v in self.timer.seconds.items()}
        shares = {k: v / guided_s for k, v in per_epoch.items()}
        shares["amsc"] = amsc_seconds / every / guided_s
        kd_seconds = guided_s - plain_s - per_epoch.get("teacher", 0.0) - amsc_seconds / every
        return {"guided": guided_s, "ratio": guided_s / plain_s, "kd_share": kd_seconds / plain_s, **shares}


def bench_backbone(ds, backbone: str, args, workdir: Path) -> dict[str, float]:
    plain = trainer_for(ds, backbone, "none", args.sets, workdir / f"{backbone}_plain")
    guided = [GuidedRun(trainer_for(ds, backbone, args.method, args.sets, workdir / f"{backbone}_{args.method}"))]
    if args.before:
        before_dir = workdir / f"{backbone}_{args.method}_before"
        guided.append(GuidedRun(trainer_for(ds, backbone, args.method, args.sets, before_dir), former_kd_paths))
    warm = min(args.steps, 2) if args.steps else 0
    time_epoch(plain, 0, warm)
    for run in guided:  # warm-up; AMSC's first (warm-up) calibration happens here
        with run.paths():
            time_epoch(run.trainer, 0, warm)
    plain_runs = []
    for epoch in range(1, args.epochs + 1):  # epochs 1..4 hold no AMSC recalibration (every = 5)
        plain_runs.append(time_epoch(plain, epoch, args.steps))
        for run in guided:
            run.time_epoch(epoch, args.steps)
    n_batches = -(-len(plain.inputs.train_users) // plain.tcfg.batch_size)
    plain_s = epoch_seconds(plain_runs, n_batches)
    result = guided[0].summary(plain_s, n_batches)
    if args.before:
        former = guided[1].summary(plain_s, n_batches)
        result.update(before_ratio=former["ratio"], before_kd_share=former["kd_share"])
    eval_s = eval_seconds(plain)
    return {
        "plain": plain_s,
        **result,
        "eval": eval_s,
        "ratio_with_eval": (result["guided"] + eval_s) / (plain_s + eval_s),
    }


def eval_seconds(trainer: Trainer, repeats: int = 2) -> float:
    """Median seconds of one validation evaluation of the student (the same for both trainers)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        trainer.evaluate_model("valid")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def amsc_cost(trainer: Trainer) -> tuple[float, int]:
    """Seconds of one AMSC recalibration with teacher S_rec, and the recalibration period."""
    objective = trainer.method
    if getattr(objective, "amsc", None) is None:
        return 0.0, 1
    started = time.perf_counter()
    objective.recalibrate(objective.amsc_config.warmup_epochs)
    return time.perf_counter() - started, objective.amsc_config.every


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    use_run_determinism(torch.device("cpu"))  # the kernels a training run uses (both trainers are on CPU)
    data = args.data or baby_dataset(DEFAULT_DATA, args.random_features)
    ds = load_dataset(data)
    if args.random_features and not ds.has_features:
        rng = np.random.default_rng(0)
        ds.text_feat = rng.normal(size=(ds.n_items, 384)).astype(np.float32)
        ds.image_feat = rng.normal(size=(ds.n_items, 1280)).astype(np.float32)
    backbones = (
        args.backbones.split(",") if args.backbones else [name for name in available() if get_class(name).trainable]
    )
    timed = f"first {args.steps} batches of {args.epochs} epochs" if args.steps else f"{args.epochs} whole epochs"
    print(
        f"data {data}: {ds.n_users} users, {ds.n_items} items, {len(ds.split(0)[0])} train rows; "
        f"{args.threads} threads; timed: {timed} per trainer; method {args.method}"
    )
    before = f" {'before':>6s} {'KD/pl':>6s}" if args.before else ""
    header = (
        f"{'backbone':10s} {'plain s/ep':>10s} {args.method + ' s/ep':>11s} {'ratio':>6s} {'KD/pl':>6s}{before}   "
        f"{'AMSC':>6s} {'teacher':>8s} {'cands':>6s} {'OT':>6s} {'rest':>6s}   {'eval s':>6s} {'ratio w/ eval':>13s}"
    )
    print(header)
    ratios, costs = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in backbones:
            r = bench_backbone(ds, backbone, args, Path(tmp))
            costs += cost_rows(backbone, args, r, ds)
            rest = 1.0 - sum(r.get(k, 0) for k in ("amsc", "teacher", "candidates", "ot"))
            ratios[backbone] = r["ratio"]
            before = f" {r['before_ratio']:6.2f} {r['before_kd_share']:6.0%}" if args.before else ""
            print(
                f"{backbone:10s} {r['plain']:10.3f} {r['guided']:11.3f} {r['ratio']:6.2f} "
                f"{r['kd_share']:6.0%}{before}   "
                f"{r.get('amsc', 0):6.1%} {r.get('teacher', 0):8.1%} {r.get('candidates', 0):6.1%} "
                f"{r.get('ot', 0):6.1%} {rest:6.1%}   {r['eval']:6.2f} {r['ratio_with_eval']:13.2f}",
                flush=True,
            )
    worst = max(ratios, key=ratios.get)
    print(f"max ratio {ratios[worst]:.2f} ({worst})")
    if args.costs_out:
        write_text(args.costs_out, pd.DataFrame(costs).to_csv(index=False))
        print(f"cost table -> {args.costs_out}")
    return 0


def cost_rows(backbone: str, args, r: dict, ds) -> list[dict]:
    """The two rows of `guider plan`'s cost table for one backbone: plain and the method, with
    the size of the data they were measured on (the plan scales by it)."""
    device = "cuda" if torch.cuda.is_available() else f"cpu ({args.threads} threads)"
    return [
        {
            "backbone": backbone,
            "method": method,
            "device": device,
            "seconds_per_epoch": seconds,
            "seconds_per_eval": r["eval"],
            "users": ds.n_users,
            "items": ds.n_items,
            "train_rows": len(ds.split(0)[0]),
        }
        for method, seconds in (("none", r["plain"]), (args.method, r["guided"]))
    ]


if __name__ == "__main__":
    sys.exit(main())
