"""Seconds per training epoch and per full evaluation, and peak memory, for every backbone.

On the synthetic `baby` preset (Baby's size: 19,445 users, 7,050 items, ~160k
interactions) by default, prints for each backbone the mean seconds of a training epoch, of
one full ranking evaluation (valid split, all items, train masked, four metrics at four
cut-offs), the ratio of that evaluation to a bare `scores = U @ I.T; topk(50)` over the same
users and items, measured in the same run, and the peak resident memory of the process that
built and trained it (and on a GPU the peak GPU memory PyTorch reserved, what
`train.jobs_per_gpu` must fit into the card). "before" is the dense-mask evaluation this one replaced, timed in the
same process on the same embeddings, with whether its per-user values are identical.
Each backbone runs in a fresh process, so its peak RSS is its own
(dataset, model, graphs, one or more epochs and the evaluation).

    python benchmarks/bench_epoch.py [--data DIR] [--epochs 2] [--backbones bpr lightgcn ...]
    # a Clothing-size catalogue (39,387 users, 23,033 items) with Amazon-size random features:
    guider data synthetic --out /tmp/clothing --users 39387 --items 23033 --no-features
    python benchmarks/bench_epoch.py --data /tmp/clothing --random-features 384,4096 --epochs 1
    # slow machines: --steps N runs the first N batches of each epoch and extrapolates
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

CACHE = Path(__file__).parent / ".cache" / "synthetic-baby"


def dataset_folder(data: Path | None) -> Path:
    if data is not None:
        return data
    if not (CACHE / "dataset.json").exists():
        from guider.data.synthetic import make_synthetic

        print(f"generating the synthetic baby preset into {CACHE} (once) ...", flush=True)
        make_synthetic(CACHE, preset="baby", seed=0, progress=True)
    return CACHE


def add_random_features(folder: Path, dims: tuple[int, int]) -> None:
    """Gaussian text/image features of the given widths where the folder has none (seeded)."""
    from guider.data import load_dataset

    n_items = load_dataset(folder).n_items
    rng = np.random.default_rng(0)
    for name, dim in zip(("text_feat.npy", "image_feat.npy"), dims):
        if not (folder / name).exists():
            np.save(folder / name, rng.normal(size=(n_items, dim)).astype(np.float32))


def time_epochs(trainer, epochs: int, steps: int = 0) -> float:
    """Seconds per epoch: the mean of whole epochs, or with `steps` the first `steps` batches of
    each epoch extrapolated as bench_guider does (epoch hooks + batches x median step)."""
    if not steps:
        started = time.perf_counter()
        for epoch in range(epochs):
            trainer.run_epoch(epoch)
        return (time.perf_counter() - started) / epochs
    from bench_guider import epoch_seconds, time_epoch

    n_batches = -(-len(trainer.inputs.train_users) // trainer.tcfg.batch_size)
    return epoch_seconds([time_epoch(trainer, epoch, steps) for epoch in range(epochs)], n_batches)


def time_eval(trainer) -> tuple[float, float]:
    """(seconds of the full evaluation, of which the forward pass producing embeddings)."""
    started = time.perf_counter()
    emb = trainer.model.eval_embeddings()
    forward = time.perf_counter() - started
    trainer.evaluate_scores(lambda users: trainer.model.scores(emb, users), "valid")
    return time.perf_counter() - started, forward


@torch.no_grad()
def evaluate_dense_mask(score_fn, target, mask, ks=(5, 10, 20, 50), chunk_size: int = 4096) -> dict:
    """The evaluation guider.engine.metrics replaced (0.2): a dense [B, n_items] boolean block per
    split and chunk, masked_fill, a full-width finiteness check and a full-width tie check
    around torch.topk, hits gathered from the dense target block. Same per-user metrics;
    kept here only as the "before" side of the ratio."""
    from guider.engine.metrics import _metrics_from_hits, evaluable_users

    def dense(mat, rows):
        block = mat[rows]
        out = torch.zeros(len(rows), mat.shape[1], dtype=torch.bool)
        out[torch.from_numpy(np.repeat(np.arange(len(rows)), np.diff(block.indptr))), block.indices] = True
        return out

    users, kmax, parts = evaluable_users(target, mask), max(ks), {}
    for start in range(0, len(users), chunk_size):
        chunk = users[start : start + chunk_size]
        scores = score_fn(torch.from_numpy(chunk)).float()
        if not torch.isfinite(scores).all():
            raise FloatingPointError("non-finite scores")
        scores = scores.masked_fill(dense(mask, chunk), float("-inf"))
        k = min(kmax, scores.shape[1])
        vals, idx = torch.topk(scores, k, dim=1)
        by_id = torch.argsort(idx, dim=1)
        idx, vals = idx.gather(1, by_id), vals.gather(1, by_id)
        idx = idx.gather(1, torch.sort(vals, dim=1, descending=True, stable=True).indices)
        tied = (scores >= vals.min(dim=1, keepdim=True).values).sum(dim=1) > k
        if tied.any():
            idx[tied] = torch.sort(scores[tied], dim=1, descending=True, stable=True).indices[:, :k]
        hits = torch.nn.functional.pad(dense(target, chunk).gather(1, idx), (0, kmax - k))
        n_target = torch.from_numpy(np.diff(target.indptr)[chunk]).double()
        for key, values in _metrics_from_hits(hits, n_target, ks).items():
            parts.setdefault(key, []).append(values.numpy())
    return {key: np.concatenate(v) for key, v in parts.items()}


def time_dense_mask_eval(trainer) -> tuple[float, bool]:
    """(seconds of the replaced evaluation, whether its per-user values equal today's)."""
    emb = trainer.model.eval_embeddings()
    score_fn = lambda users: trainer.model.scores(emb, users)  # noqa: E731
    started = time.perf_counter()
    before = evaluate_dense_mask(score_fn, trainer.matrices["valid"], trainer.matrices["train"])
    seconds = time.perf_counter() - started
    now = trainer.evaluate_scores(score_fn, "valid").per_user
    return seconds, all(np.array_equal(before[key], now[key]) for key in before)


def time_bare_topk(trainer, k: int = 50) -> float:
    """U @ I.T and topk for the same users in the same chunks, nothing else."""
    from guider.engine.metrics import evaluable_users

    emb = trainer.model.eval_embeddings()
    users = torch.from_numpy(evaluable_users(trainer.matrices["valid"], trainer.matrices["train"])).to(trainer.device)
    chunk = trainer.tcfg.eval_batch_users
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(users), chunk):
            scores = emb.users[users[start : start + chunk]] @ emb.items.T
            torch.topk(scores, min(k, scores.shape[1]), dim=1)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def measure(name: str, folder: str, epochs: int, device: str, threads: int, steps: int = 0, compare=True) -> dict:
    """One backbone in this (fresh) process: timings and the process's peak RSS."""
    from guider.config import resolve_run_config
    from guider.data import load_dataset
    from guider.engine.device import resolve_device
    from guider.engine.trainer import Trainer, use_run_determinism

    torch.set_num_threads(threads)
    ds = load_dataset(folder)
    dev = resolve_device(device)
    use_run_determinism(dev)  # the kernels a training run uses
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(ds, Path(tmp), resolve_run_config(name), dev, progress=False)
        per_epoch = time_epochs(trainer, epochs, steps)
        (evaluation, forward), bare = time_eval(trainer), time_bare_topk(trainer)
        before, same = time_dense_mask_eval(trainer) if compare else (float("nan"), True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    gpu_mb = torch.cuda.max_memory_reserved() / 2**20 if trainer.device.type == "cuda" else float("nan")
    return {
        "epoch": per_epoch, "eval": evaluation, "forward": forward, "bare": bare, "peak_mb": peak_mb,
        "gpu_mb": gpu_mb, "before": before, "same": same,
    }  # fmt: skip


def main(argv=None) -> None:
    from guider.data import load_dataset
    from guider.models import get_class, registered

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset folder (default: synthetic baby preset, generated once)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per backbone")
    parser.add_argument("--backbones", nargs="*", default=None, help="default: every trainable registered backbone")
    parser.add_argument(
        "--steps",
        type=int,
        default=0,
        help="run only the first STEPS batches of each epoch (s/epoch extrapolated; the peak RSS then "
        "covers the graphs, STEPS batches and the evaluation); 0 = whole epochs",
    )
    parser.add_argument(
        "--no-before", action="store_true", help="skip timing the replaced dense-mask evaluation (CPU only)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument(
        "--random-features", metavar="TEXT_DIM,IMAGE_DIM", help="add Gaussian features of these widths if absent"
    )
    args = parser.parse_args(argv)
    folder = dataset_folder(args.data)
    if args.random_features:
        add_random_features(folder, tuple(int(d) for d in args.random_features.split(",")))
    backbones = args.backbones or [b for b in registered() if get_class(b).trainable]
    print(f"dataset {folder}: {load_dataset(folder).statistics()}, device {args.device}, {args.threads} threads")
    header = ["s/epoch", "s/eval", "forward", "bare s"]
    print(
        f"{'backbone':<10} " + " ".join(f"{h:>8}" for h in header) + f" {'ranking/bare':>12} {'peak MB':>8}"
        + f" {'GPU MB':>8}"
        + ("" if args.no_before else f" {'before s':>8} {'before/now':>10} {'same':>5}")
    )  # fmt: skip
    spawn = multiprocessing.get_context("spawn")
    for name in backbones:
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:  # a fresh process: its own peak RSS
            job = (name, str(folder), args.epochs, args.device, args.threads, args.steps, not args.no_before)
            r = pool.submit(measure, *job).result()
        ranking = r["eval"] - r["forward"]  # the bare baseline's work: scores, topk, plus masking and metrics
        before = "" if args.no_before else f" {r['before']:8.2f} {r['before'] / r['eval']:10.2f} {str(r['same']):>5}"
        print(
            f"{name:<10} {r['epoch']:8.2f} {r['eval']:8.2f} {r['forward']:8.2f} {r['bare']:8.2f} "
            f"{ranking / r['bare']:12.2f} {r['peak_mb']:8.0f} {r['gpu_mb']:8.0f}" + before,
            flush=True,
        )


if __name__ == "__main__":
    main()
