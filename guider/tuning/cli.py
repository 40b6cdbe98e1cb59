"""`guider tune points|select`: hyper-parameter grids chosen on the validation split.

    guider tune points --backbone lightgcn --method none [--grid JSON] [--max-points N]
    guider tune select --dataset baby --backbone lightgcn --method none \\
        --runs results/tuning/baby/lightgcn/none/point0 ... --out results/tuning/baby/lightgcn/none.json
    guider tune select ... --method paper --inherit results/tuning/baby/lightgcn/none.json --runs ...

`points` prints the grid's points in order (JSON, one object of settings per point: what
the workflow trains as point0, point1, ...). `select` reads the trained points (in the same
order), picks the best valid Recall@20 (ties: the earlier point), and writes the tuning
record with the point test-set selection would pick and the optimism it adds
(guider.tuning.grids). A method without a grid of its own gets plain training's point
(`--inherit`, no `--runs`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", required=True, help="registered backbone name")
    parser.add_argument("--method", default="none", help="training method (default none: the backbone's own grid)")
    parser.add_argument(
        "--grid",
        type=_json_argument,
        help="the grid as JSON, e.g. '{\"model.reg_weight\": [0.01, 0.001]}' (default: recorded)",
    )
    parser.add_argument("--max-points", type=int, help="train a seeded random subset of this many points")
    parser.add_argument("--subset-seed", type=int, default=0, help="seed of that subset (default 0)")
    parser.add_argument("--dataset", help="select: dataset name recorded in the record")
    parser.add_argument("--runs", nargs="*", type=Path, default=[], help="select: the points' run folders, in order")
    parser.add_argument("--inherit", type=Path, help="select: plain training's record, whose point the method keeps")
    parser.add_argument("--out", type=Path, help="select: the tuning record to write")


def _json_argument(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err})") from None


def run(args: argparse.Namespace) -> int:
    from guider import tuning

    grid = tuning.grid_for(args.backbone, args.method) if args.grid is None else tuning.check_grid(args.grid, "--grid")
    points = tuning.grid_points(grid, args.max_points, args.subset_seed)
    tuning.check_point_keys(args.backbone, args.method, points)
    inherits = not grid and args.method != tuning.PLAIN  # no grid of its own: plain training's point
    if args.command == "points":
        print(json.dumps([] if inherits else points))
        return 0
    if args.out is None:
        raise ValueError("guider tune select needs --out (the tuning record to write)")
    coordinates = {"dataset": args.dataset, "backbone": args.backbone, "method": args.method}
    inherited = tuning.read_record(args.inherit)["chosen"]["settings"] if args.inherit else {}
    if inherits:
        if args.runs or args.inherit is None:
            raise ValueError(f"{args.backbone}/{args.method}: no grid to tune; pass --inherit (plain's record) only")
        record = tuning.inherited_record(tuning.read_record(args.inherit), **coordinates)
    else:
        if len(args.runs) != len(points):
            raise ValueError(f"the grid has {len(points)} points but {len(args.runs)} --runs were given")
        results = [tuning.read_point_run(run_dir, point) for run_dir, point in zip(args.runs, points)]
        record = tuning.select(grid, points, results, inherited, **coordinates)
    tuning.write_record(record, args.out)
    print(f"{args.out}: {describe(record)}")
    return 0


def describe(record: dict) -> str:
    chosen = record["chosen"]
    if not record["points"]:
        return f"no grid of its own; trains plain training's point {chosen['settings']}"
    metric = record["metric"]
    return (
        f"{len(record['points'])} points; chosen on valid: point {chosen['index']} {chosen['point']} "
        f"(valid {chosen['valid'][metric]:.4f}, test {chosen['test'][metric]:.4f}); on test it would be point "
        f"{record['test_selected']['index']} (test {record['test_selected']['test'][metric]:.4f}, "
        f"optimism {record['optimism']:+.4f})"
    )
