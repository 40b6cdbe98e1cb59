"""`guider plan [--configfile FILE] --costs COSTS.csv`: how many trainings a config starts and
what they cost, before anything runs (guider.plan).

    guider plan --costs benchmarks/costs_cpu_baby.csv                 # the paper config
    guider plan --configfile config/demo.yaml --costs ... --gpus 2 --jobs-per-gpu 1 4 8
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configfile", type=Path, help="workflow config (default: config/config.yaml)")
    parser.add_argument("--costs", required=True, type=Path, help="cost table (benchmarks/bench_guider.py --costs-out)")
    parser.add_argument("--root", type=Path, default=Path("."), help="the checkout holding the Snakefile (default .)")
    parser.add_argument("--results", type=Path, default=Path("results"), help="where finished runs are (epochs)")
    parser.add_argument("--assume-epochs", type=int, default=200, help="epochs per run without finished runs")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs of the projection (default 1)")
    parser.add_argument("--jobs-per-gpu", type=int, nargs="+", default=[1, 4, 8], help="default: 1 4 8")
    parser.add_argument("--gpu-share", type=float, default=0.25, help="fraction of a card one job keeps busy")
    parser.add_argument("--remaining", action="store_true", help="only the jobs not done yet (default: all)")


def run(args: argparse.Namespace) -> int:
    from guider import plan

    listing = plan.dry_run(args.configfile, args.root, forceall=not args.remaining)
    runs = plan.parse_dry_run(listing)
    if not runs:
        print("nothing to train")
        return 0
    table = plan.project(runs, plan.read_costs(args.costs), plan.finished_epochs(args.results), args.assume_epochs)
    devices = ", ".join(sorted(set(table["device"])))
    n_points = int(table["grid_points"].sum())
    print(f"{len(runs)} trainings: {len(runs) - n_points} study runs + {n_points} tuning grid points")
    print(
        f"{'backbone':10s} {'method':12s} {'runs':>6s} {'epochs':>7s} {'from':>14s} {'costed as':>9s} "
        f"{'h/run':>7s} {'hours':>9s}"
    )
    for row in table.itertuples():
        print(
            f"{row.backbone:10s} {row.method:12s} {row.runs:6d} {row.epochs:7.0f} {row.epochs_from:>14s} "
            f"{row.costed_as:>9s} {row.hours_per_run:7.3f} {row.hours:9.1f}"
        )
    total = float(table["hours"].sum())
    print(f"total: {total:,.2f} hours of one job on {devices} (cost table {args.costs})")
    for jobs in args.jobs_per_gpu:
        wall = plan.wall_hours(total, args.gpus, jobs, args.gpu_share)
        print(
            f"wall time on {args.gpus} GPU(s) x {jobs} job(s) per GPU: {wall:,.2f} h ({wall / 24:,.1f} days; "
            f"assumes one job keeps {args.gpu_share:.0%} of a card busy)"
        )
    return 0
