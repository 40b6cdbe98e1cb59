"""GUIDER's OT at its real operating point: how close each solver's gradient is to the converged
OT, and what each costs (issue: GUIDER solved as specified; docs/method.md, "The OT solve").

    python benchmarks/bench_sinkhorn.py                   # small preset (20 % noise), LightGCN 5,20,60, MF-BPR 20,60
    python benchmarks/bench_sinkhorn.py --points lightgcn:5 --batches 2      # a quick look

A GUIDER (`paper`) run trains up to the largest epoch of each point and keeps the OT inputs
(student and teacher distributions, cost matrix) of the last `--batches` solves of each
requested epoch. The reference is POT's `ot.solve_batch` in float64 (Sinkhorn, tolerance
1e-12, up to --reference-iters iterations; its potentials are the scalings u, f = eps log u).
Each solver of guider.methods.distill (`kd.solver`) then solves the same inputs in float32, and
its gradient w.r.t. the student's logits is compared with the reference's: per-user cosine
(the worst batch's mean, and the smallest over users), the norm ratio ||g|| / ||g_ref|| (its
range over batches), the value's relative error, milliseconds per [U, K, K] solve (median of
5) and the mean iterations per user. The specification's bound: mean cosine >= 0.99 and norm
ratio within [0.95, 1.05] in the worst batch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ot
import torch

from guider.data import load_dataset
from guider.engine.trainer import use_run_determinism
from guider.methods import distill

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_guider import trainer_for  # noqa: E402

DEFAULT_DATA = Path("results/tmp/bench_small")
DEFAULT_POINTS = "lightgcn:5,20,60;bpr:20,60"
SOLVERS = {
    "newton (default)": distill.KDConfig(),
    "sinkhorn, POT rule tol 1e-5": distill.KDConfig(solver="sinkhorn"),
    "truncated, 30 iterations (0.3)": distill.KDConfig(solver="truncated", iters=30),
    "truncated, 1000 iterations": distill.KDConfig(solver="truncated", iters=1000),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset folder (default: the small preset with 20 %% noise)")
    parser.add_argument("--points", default=DEFAULT_POINTS, help="backbone:epoch,epoch;... (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=3, help="last OT solves kept per captured epoch")
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--reference-iters", type=int, default=200000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--solvers", help="comma-separated subset of the solver rows (default: all)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def small_dataset(path: Path) -> Path:
    """The synthetic small preset with 20 % popularity noise (the verdict's data), generated once."""
    if not (path / "dataset.json").exists():
        from guider.data.synthetic import make_synthetic

        make_synthetic(path, preset="small", noise_ratio=0.2, seed=0)
    return path


def capture(data: Path, backbone: str, epochs: list[int], n_batches: int, sets: list[str]) -> dict[int, list]:
    """{epoch: [(p_student, p_teacher, cost), ...]}: the last `n_batches` OT solves of each epoch."""
    ds = load_dataset(data)
    kept: list[tuple] = []
    original = distill.entropic_ot

    def keep(p_student, p_teacher, cost, *args, **kwargs):
        kept.append((p_student.detach().clone(), p_teacher.detach().clone(), cost.detach().clone()))
        del kept[:-n_batches]
        return original(p_student, p_teacher, cost, *args, **kwargs)

    captured = {}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = trainer_for(ds, backbone, "paper", sets, Path(tmp))
        distill.entropic_ot = keep
        try:
            for epoch in range(max(epochs)):
                trainer.run_epoch(epoch)
                if epoch + 1 in epochs:
                    captured[epoch + 1] = list(kept)
        finally:
            distill.entropic_ot = original
    return captured


def reference(p_s, p_t, cost, eps: float, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values [U], gradient of their sum w.r.t. the student's logits [U, K]) of POT's float64 solve."""
    a, b, m = p_s.double(), p_t.double(), cost.double()
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    res = ot.solve_batch(m, reg=eps, a=a, b=b, max_iter=iters, tol=1e-12, method="sinkhorn", grad="detach")
    f = eps * torch.log(res.potentials[0])
    f = f - f.mean(-1, keepdim=True)
    return res.value, a * (f - (a * f).sum(-1, keepdim=True))


def solve(p_s, p_t, cost, eps: float, kd: distill.KDConfig):
    """(values [U], gradient w.r.t. the student's logits [U, K], mean iterations) in float32."""
    logits = torch.log(p_s).float().requires_grad_(True)
    stats: list = []
    values = distill.entropic_ot(torch.softmax(logits, -1), p_t.float(), cost.float(), eps, kd,
                                 cost_max=distill.COSINE_COST_MAX, stats=stats)  # fmt: skip
    values.sum().backward()
    return values.detach().double(), logits.grad.double(), float(stats[0].iters.double().mean())


def median_ms(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def table(name: str, problems: list[tuple], solvers: dict, eps: float, reference_iters: int) -> list[dict]:
    refs = [reference(*problem, eps, reference_iters) for problem in problems]
    rows = []
    for label, kd in solvers.items():
        means, mins, norms, value_err, iters = [], [], [], [], []
        for problem, (ref_value, ref_grad) in zip(problems, refs, strict=True):
            value, grad, mean_iters = solve(*problem, eps, kd)
            cosine = torch.nn.functional.cosine_similarity(grad, ref_grad, dim=1)
            means.append(float(cosine.mean()))
            mins.append(float(cosine.min()))
            norms.append(float(grad.norm() / ref_grad.norm()))
            value_err.append(abs(float(value.mean() - ref_value.mean())) / abs(float(ref_value.mean())))
            iters.append(mean_iters)
        ms = median_ms(lambda kd=kd: solve(*problems[0], eps, kd))
        rows.append({"point": name, "solver": label, "ms": ms, "iters": statistics.mean(iters),
                     "cos_mean": min(means), "cos_min": min(mins), "norm_lo": min(norms), "norm_hi": max(norms),
                     "value_err": max(value_err)})  # fmt: skip
        row = rows[-1]
        print(
            f"{name:14s} {label:32s} {row['ms']:8.1f} {row['iters']:7.1f} {row['cos_mean']:9.5f} "
            f"{row['cos_min']:8.4f} {row['norm_lo']:6.3f}-{row['norm_hi']:5.3f} {row['value_err']:10.1e}",
            flush=True,
        )
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    use_run_determinism(torch.device("cpu"))
    data = args.data or small_dataset(DEFAULT_DATA)
    solvers = {k: v for k, v in SOLVERS.items() if not args.solvers or k.split(",")[0] in args.solvers.split(",")}
    print(
        f"data {data}; eps {args.eps}; reference: POT ot.solve_batch float64, tol 1e-12; worst of the captured batches"
    )
    print(f"{'point':14s} {'solver':32s} {'ms':>8s} {'iters':>7s} {'cos mean':>9s} {'cos min':>8s} "
          f"{'norm ratio':>12s} {'value err':>10s}")  # fmt: skip
    for spec in args.points.split(";"):
        backbone, epochs = spec.split(":")
        captured = capture(data, backbone, [int(e) for e in epochs.split(",")], args.batches, args.sets)
        for epoch, problems in captured.items():
            table(f"{backbone} e{epoch}", problems, solvers, args.eps, args.reference_iters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
