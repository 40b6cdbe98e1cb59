"""`guider plan [--configfile FILE] --costs COSTS.csv`: how many trainings a config starts and
what they cost, before anything runs (the model: guider.plan.costs).

    guider plan --costs benchmarks/costs_cpu_baby.csv                 # the paper config, CPU hours
    guider plan --configfile config/demo.yaml --costs costs_gpu_NVIDIA_H100.csv --gpus 2 --jobs-per-gpu 1 4 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

EPOCHS_HELP = (
    "epochs per run where this study has no finished run of the backbone and method (default 100): the trainer "
    "stops early (train.patience evaluations without a valid Recall@20 gain), and MMRec-style runs end after "
    "about 50-150 of the 1000 epochs allowed; capped by the config's train.epochs"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configfile", type=Path, help="workflow config (default: ROOT/config/config.yaml)")
    parser.add_argument(
        "--costs", required=True, type=Path, help="cost table (benchmarks/gpu_costs.py, bench_guider.py --costs-out)"
    )
    parser.add_argument(
        "--root", type=Path, default=Path("."), help="the workflow's working directory, holding results/ (default .)"
    )
    parser.add_argument("--assume-epochs", type=int, default=100, help=EPOCHS_HELP)
    parser.add_argument("--gpus", type=int, default=1, help="GPUs of the wall-time projection (default 1)")
    parser.add_argument(
        "--jobs-per-gpu",
        type=int,
        nargs="+",
        help="jobs sharing one GPU (default: every K the packing table measured; gpu_costs.py measures 1 2 4 8)",
    )
    parser.add_argument(
        "--packing", type=Path, help="measured packing table (default: packing_gpu_<card>.csv next to --costs)"
    )
    parser.add_argument("--remaining", action="store_true", help="only the trainings without a finished metrics.json")


def run(args: argparse.Namespace) -> int:
    from guider.plan import costs as plan
    from guider.study import Study

    configfile = args.configfile or args.root / "config" / "config.yaml"
    study = Study.from_file(configfile)
    costs = plan.read_costs(args.costs)
    kind = plan.table_kind(costs, args.costs)
    everything = study.runs()
    done = plan.finished_runs(everything, args.root)
    runs = [r for r in everything if r not in done] if args.remaining else everything
    print_counts(study, runs, args.remaining)
    sizes = {name: plan.dataset_size(study, name, args.root) for name in study.datasets}
    print_sizes(costs, sizes, args.costs)
    print_epochs(study, args.assume_epochs)
    print_finished(study, costs, sizes, done)
    table = plan.project(study, runs, costs, sizes, done, args.assume_epochs)
    if table.empty:
        print("nothing to train")
        return 0
    print_table(table)
    print_totals(float(table["hours"].sum()), costs, kind, args)
    return 0


def print_totals(total: float, costs, kind: str, args) -> None:
    """CPU hours and no GPU line for a CPU table; GPU hours, memory and wall time for a GPU table."""
    from guider.plan import costs as plan

    if kind == "cpu":
        print(f"total: {total:,.3f} CPU hours (one job on {plan.table_device(costs)})")
        print("no GPU estimate: this cost table is CPU-measured; measure one with benchmarks/gpu_costs.py on the GPU")
        return
    print(f"total: {total:,.3f} GPU hours (one job on {plan.table_device(costs)})")
    print_memory(costs)
    print_wall(total, costs, args)


def print_counts(study, runs, remaining: bool) -> None:
    """The trainings (study runs + grid points) and the workflow's jobs per rule."""
    points = sum(r.is_tuning for r in runs)
    left = " left (--remaining: no metrics.json yet)" if remaining else ""
    print(f"{len(runs)} trainings{left}: {len(runs) - points} study runs + {points} tuning grid points")
    counts = study.counts()
    print(f"jobs per rule ({sum(counts.values())} in all): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for line in study.skipped_lines(short=False):
        print(f"left out: {line}")


def print_sizes(costs, sizes, path) -> None:
    """The table's device and size, and each dataset's scale factors against it."""
    from guider.plan import costs as plan

    kind = "GPU" if plan.table_kind(costs) == "gpu" else "CPU"
    print(f"cost table {path}: {kind}-measured, one job on {plan.table_device(costs)}")
    measured = "train_rows" in costs.columns
    if not measured:
        print(
            f"  it records no dataset size: assumed measured at the Baby size ({plan.BABY.label()}: {plan.BABY.source})"
        )
    for reference in plan.reference_sizes(costs):
        if measured:
            print(f"  measured on {reference.source}: {reference.label()}")
        print("  datasets (s/epoch scales with train rows, s/eval with users x items):")
        for name, size in sizes.items():
            epoch, evaluation = plan.scale_factors(size, reference)
            print(f"    {name}: {size.label()} ({size.source}): s/epoch x{epoch:.3g}, s/eval x{evaluation:.3g}")


def print_epochs(study, assume_epochs: int) -> None:
    cap = study.config["train"]["epochs"]
    capped = f", capped at train.epochs {cap}" if cap is not None and cap < assume_epochs else ""
    print(
        f"epochs per run: {assume_epochs} assumed (--assume-epochs){capped}; "
        "this study's finished runs give their backbone and method's mean"
    )


def print_finished(study, costs, sizes, done) -> None:
    """Finished runs of this study, the hours their benchmark files measured, measured / projected."""
    from guider.plan import costs as plan

    measured = [info.seconds for info in done.values() if info.seconds is not None]
    print(
        f"finished: {len(done)} runs, {sum(measured) / 3600:,.3f} h measured "
        f"({len(measured)} with a benchmark file under results/benchmarks/)"
    )
    found = plan.calibration(study, costs, sizes, done).values()
    projected = sum(p for _, _, p in found)
    if projected > 0:
        print(
            f"measured / projected: {sum(m for _, m, _ in found) / projected:.2f} over {sum(n for n, _, _ in found)} "
            "finished runs (wall seconds of their benchmark files / this projection at their own epochs_run; "
            "per backbone and method: column meas/proj)"
        )


def print_table(table) -> None:
    """One line per (backbone, method); the meas/proj column only where runs were measured."""
    import pandas as pd

    measured = table["measured_ratio"].notna().any()
    print(
        f"{'backbone':10s} {'method':14s} {'runs':>6s} {'points':>6s} {'epochs':>7s} {'from':>13s} "
        f"{'costed as':>9s} {'h/run':>8s} {'hours':>10s}" + (f" {'meas/proj':>9s}" if measured else "")
    )
    for row in table.itertuples():
        ratio = "" if pd.isna(row.measured_ratio) else f"{row.measured_ratio:.2f}"
        print(
            f"{row.backbone:10s} {row.method:14s} {row.runs:6d} {row.grid_points:6d} {row.epochs:7.1f} "
            f"{row.epochs_from:>13s} {row.costed_as:>9s} {row.hours_per_run:8.4f} {row.hours:10.3f}"
            + (f" {ratio:>9s}" if measured else "")
        )


def print_memory(costs) -> None:
    if "peak_memory_gib" not in costs.columns or costs["peak_memory_gib"].isna().all():
        return
    worst = costs.loc[costs["peak_memory_gib"].idxmax()]
    print(
        f"peak GPU memory per job (at the table's dataset size): up to {worst['peak_memory_gib']:.2f} GiB "
        f"({worst['backbone']}/{worst['method']})"
    )


def print_wall(total: float, costs, args) -> None:
    """Wall time on --gpus cards for each --jobs-per-gpu, from the measured packing speedup."""
    from guider.plan import costs as plan

    path = args.packing or plan.find_packing(args.costs, costs)
    if path is None:
        wall = plan.wall_hours(total, args.gpus, 1.0)
        print(
            f"wall time on {args.gpus} GPU(s) x 1 job per GPU: {wall:,.3f} h ({wall / 24:,.1f} days); no packing "
            "measured (benchmarks/gpu_costs.py writes packing_gpu_<card>.csv; --packing FILE)"
        )
        return
    packing = plan.read_packing(path)
    for jobs in args.jobs_per_gpu or sorted(set(packing["jobs"])):
        gain = plan.speedup(packing, jobs, path)
        wall = plan.wall_hours(total, args.gpus, gain)
        print(
            f"wall time on {args.gpus} GPU(s) x {jobs} job(s) per GPU: {wall:,.3f} h ({wall / 24:,.1f} days; "
            f"measured speedup {gain:.2f}x, {path})"
        )
