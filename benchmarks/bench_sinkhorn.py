"""How far GUIDER's truncated Sinkhorn is from the entropic OT it stands for, at its real
operating point, and what each iteration budget costs.

    python benchmarks/bench_sinkhorn.py                     # synthetic baby preset, MF-BPR student, 3 epochs
    python benchmarks/bench_sinkhorn.py --data DIR --backbone lightgcn --epochs 5

A GUIDER (`paper`) run trains for --epochs epochs and keeps the OT inputs (student and
teacher distributions, cost matrix) of its last batches. For each iteration budget the
float32 solve (the training path: guider.methods.distill.entropic_ot, tol 0) is compared
with the float64 solve run to convergence (--reference-iters, tol 1e-12): the relative
error of the mean loss value, and of the gradient w.r.t. the student's logits (relative
norm error; mean and minimum per-user cosine; the smallest ratio of its norm to the
reference's), with the median seconds of the float32 solve. The same table for random
problems (the shape tests/test_ot.py uses for its tolerances: logits of scale 1, 16-d
Gaussian embeddings) shows the difference between a test problem and the training one.

kd.iters (30) and kd.eps (0.05) are the defaults; --set passes other `kd.*` values to the
run (the capture), --eps to the solves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from guider.data import load_dataset
from guider.engine.trainer import use_run_determinism
from guider.methods import distill

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_guider import DEFAULT_DATA, baby_dataset, trainer_for  # noqa: E402

BUDGETS = (1, 5, 10, 20, 30, 50, 100, 300, 1000)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset folder (default: the synthetic baby preset)")
    parser.add_argument("--backbone", default="bpr")
    parser.add_argument("--epochs", type=int, default=3, help="GUIDER epochs trained before the capture")
    parser.add_argument("--batches", type=int, default=3, help="last batches whose OT inputs are kept")
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--reference-iters", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def capture(data: Path, backbone: str, epochs: int, n_batches: int, sets: list[str]) -> list[tuple]:
    """The (p_student, p_teacher, cost) of the last `n_batches` OT solves of a GUIDER run."""
    ds = load_dataset(data)
    kept: list[tuple] = []
    original = distill.entropic_ot

    def keep(p_student, p_teacher, cost, *args, **kwargs):
        kept.append((p_student.detach().clone(), p_teacher.detach().clone(), cost.detach().clone()))
        del kept[:-n_batches]
        return original(p_student, p_teacher, cost, *args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        trainer = trainer_for(ds, backbone, "paper", sets, Path(tmp))
        distill.entropic_ot = keep
        try:
            for epoch in range(epochs):
                trainer.run_epoch(epoch)
        finally:
            distill.entropic_ot = original
    return kept


def random_problems(n: int, n_users: int = 128, k: int = 50) -> list[tuple]:
    """Problems shaped like tests/test_ot.py's tolerance test (scale-1 logits, 16-d embeddings)."""
    problems = []
    for seed in range(n):
        gen = torch.Generator().manual_seed(seed)
        p_s = torch.softmax(torch.randn(n_users, k, generator=gen), -1)
        p_t = torch.softmax(torch.randn(n_users, k, generator=gen), -1)
        problems.append((p_s, p_t, distill.cosine_cost(torch.randn(n_users, k, 16, generator=gen))))
    return problems


def solve(p_s, p_t, cost, eps: float, iters: int, tol: float, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(values [U], gradient of their sum w.r.t. the student's logits [U, K])."""
    logits = torch.log(p_s).to(dtype).requires_grad_(True)
    values = distill.entropic_ot(
        torch.softmax(logits, -1), p_t.to(dtype), cost.to(dtype), eps, iters, tol, cost_max=distill.COSINE_COST_MAX
    )
    values.sum().backward()
    return values.detach().double(), logits.grad.double()


def median_seconds(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def table(problems: list[tuple], budgets: list[int], eps: float, reference_iters: int) -> None:
    references = [solve(*p, eps, reference_iters, 1e-12, torch.float64) for p in problems]
    print(
        f"{'iters':>6s} {'ms':>7s} {'value rel err':>14s} {'grad rel err':>13s} "
        f"{'cos mean':>9s} {'cos min':>8s} {'|g|/|g_ref|':>11s}"
    )
    for iters in budgets:
        value_err, grad_err, cos_mean, cos_min, norm_ratio = [], [], [], [], []
        for problem, (ref_value, ref_grad) in zip(problems, references, strict=True):
            value, grad = solve(*problem, eps, iters, 0.0, torch.float32)
            value_err.append(abs(float(value.mean() - ref_value.mean())) / abs(float(ref_value.mean())))
            grad_err.append(float((grad - ref_grad).norm() / ref_grad.norm()))
            norm_ratio.append(float(grad.norm() / ref_grad.norm()))
            cosine = torch.nn.functional.cosine_similarity(grad, ref_grad, dim=1)
            cos_mean.append(float(cosine.mean()))
            cos_min.append(float(cosine.min()))
        seconds = median_seconds(lambda iters=iters: solve(*problems[0], eps, iters, 0.0, torch.float32))
        print(
            f"{iters:6d} {1000 * seconds:7.2f} {max(value_err):14.2e} {max(grad_err):13.2e} "
            f"{min(cos_mean):9.4f} {min(cos_min):8.4f} {min(norm_ratio):11.3f}",
            flush=True,
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    use_run_determinism(torch.device("cpu"))
    data = args.data or baby_dataset(DEFAULT_DATA, random_features=True)
    budgets = [int(b) for b in args.budgets.split(",")]
    problems = capture(data, args.backbone, args.epochs, args.batches, args.sets)
    p_s, p_t, cost = problems[-1]
    print(
        f"captured {len(problems)} OT solves of a {args.backbone} GUIDER run after {args.epochs} epochs on {data}: "
        f"{tuple(cost.shape)} costs, mean cost {float(cost.mean()):.3f}, "
        f"share of costs < 0.5: {float((cost < 0.5).float().mean()):.3f}, "
        f"max p_student {float(p_s.max()):.3f}, max p_teacher {float(p_t.max()):.3f}; eps {args.eps}"
    )
    print("worst over the captured batches (errors against float64 at convergence):")
    table(problems, budgets, args.eps, args.reference_iters)
    print("random problems of tests/test_ot.py's shape (scale-1 logits, 16-d embeddings):")
    table(random_problems(len(problems)), budgets, args.eps, args.reference_iters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
