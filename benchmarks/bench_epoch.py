"""Seconds per training epoch and per full evaluation for every backbone.

On the synthetic `baby` preset (Baby's size: 19,445 users, 7,050 items, ~160k
interactions), prints for each backbone the mean seconds of a training epoch, of one full
ranking evaluation (valid split, all items, train masked, four metrics at four cut-offs),
and the ratio of that evaluation to a bare `scores = U @ I.T; topk(50)` over the same
users and items, measured in the same run.

    python benchmarks/bench_epoch.py [--data DIR] [--epochs 2] [--backbones bpr lightgcn ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from guider.config import resolve_run_config
from guider.data import load_dataset
from guider.device import resolve_device
from guider.metrics import evaluable_users
from guider.models import available
from guider.train import Trainer

CACHE = Path(__file__).parent / ".cache" / "synthetic-baby"


def dataset_folder(data: Path | None) -> Path:
    if data is not None:
        return data
    if not (CACHE / "dataset.json").exists():
        from guider.data.synthetic import make_synthetic

        print(f"generating the synthetic baby preset into {CACHE} (once) ...", flush=True)
        make_synthetic(CACHE, preset="baby", seed=0, progress=True)
    return CACHE


def time_epochs(trainer: Trainer, epochs: int) -> float:
    started = time.perf_counter()
    for epoch in range(epochs):
        trainer.run_epoch(epoch)
    return (time.perf_counter() - started) / epochs


def time_eval(trainer: Trainer) -> tuple[float, float]:
    """(seconds of the full evaluation, of which the forward pass producing embeddings)."""
    started = time.perf_counter()
    emb = trainer.model.eval_embeddings()
    forward = time.perf_counter() - started
    trainer.evaluate_scores(lambda users: trainer.model.scores(emb, users), "valid")
    return time.perf_counter() - started, forward


def time_bare_topk(trainer: Trainer, k: int = 50) -> float:
    """U @ I.T and topk for the same users in the same chunks, nothing else."""
    emb = trainer.model.eval_embeddings()
    users = torch.from_numpy(evaluable_users(trainer.matrices["valid"], trainer.matrices["train"])).to(trainer.device)
    chunk = trainer.tcfg["eval_batch_users"]
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(users), chunk):
            scores = emb.users[users[start : start + chunk]] @ emb.items.T
            torch.topk(scores, k, dim=1)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset folder (default: synthetic baby preset, generated once)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per backbone")
    parser.add_argument("--backbones", nargs="*", default=[b for b in available() if b != "pop"])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    ds = load_dataset(dataset_folder(args.data))
    device = resolve_device(args.device)
    print(f"dataset {ds.name}: {ds.statistics()} on {device}, torch threads {torch.get_num_threads()}")
    print(f"{'backbone':<10} {'s/epoch':>8} {'s/eval':>8} {'forward':>8} {'bare s':>8} {'ranking/bare':>12}")
    for name in args.backbones:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(ds, Path(tmp), resolve_run_config(name), device, progress=False)
            per_epoch = time_epochs(trainer, args.epochs)
            (evaluation, forward), bare = time_eval(trainer), time_bare_topk(trainer)
        ranking = evaluation - forward  # same work as the bare baseline: scores, topk, plus masking and metrics
        print(
            f"{name:<10} {per_epoch:8.2f} {evaluation:8.2f} {forward:8.2f} {bare:8.2f} {ranking / bare:12.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
