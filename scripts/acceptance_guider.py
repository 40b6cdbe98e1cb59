"""Acceptance runs for GUIDER: every backbone x method x seed on one noisy dataset, then
the table of test Recall@20 / NDCG@20 (mean +- std over seeds).

    python scripts/acceptance_guider.py --data DIR --out results/tmp/acceptance --jobs 4
    python scripts/acceptance_guider.py --out results/tmp/acceptance --table-only

Methods: none (plain), paper, as_released, the ablations no_amsc / no_dbpr / kl_kd / no_kd,
the T-CE / R-CE baselines and DA-MRS (`damrs_plugin`, run on bpr / vbpr / lightgcn only: the pairs a
method refuses are skipped); `--extra LABEL=VARIANT:KEY=VALUE;KEY=VALUE` adds a labelled
configuration (e.g. `paper_w1=paper:kd.weight=1.0`) usable in --methods.
Each run is one `guider train` subprocess writing
OUT/runs/<backbone>/<method>/seed<k>/; finished runs (metrics.json present) are skipped,
so the script can be stopped and restarted. Runs are launched in priority order: every
method for the first seed, then the --core methods (plain and paper) for the other
seeds, then the rest, so a time-limited session still yields the most useful table.
`--deadline S` stops launching new runs after S seconds and stops unfinished ones at
S + --grace seconds; the table then covers the finished runs and says how many.

Without --data the synthetic `small` preset with --noise-ratio injected noise is
generated into OUT/data. Model selection is the trainer's (best valid Recall@20); nothing
here looks at test numbers except to print them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from guider.runs.atomic import write_text

METHODS = ("none", "paper", "as_released", "no_amsc", "no_dbpr", "kl_kd", "no_kd", "tce", "rce", "damrs_plugin")
COMPARED = ("paper", "damrs_plugin")  # methods whose table gets a '>plain' comparison block


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="noisy dataset folder (default: generate the small preset)")
    p.add_argument("--noise-ratio", type=float, default=0.2)
    p.add_argument("--out", type=Path, default=Path("results/tmp/acceptance"))
    p.add_argument("--backbones", default=None, help="comma-separated (default: every trainable backbone)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="LABEL=METHOD:KEY=VALUE;...",
        help="a labelled method with its own overrides, e.g. paper_w1=paper:kd.weight=1.0",
    )
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--core", default="none,paper", help="methods run first for the seeds after the first (order only)")
    p.add_argument("--epochs", type=int, help="maximum epochs per run (default: the trainer's)")
    p.add_argument("--patience", type=int)
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra override, passed to the runs whose method has that section, e.g. kd.weight=0.5",
    )
    p.add_argument("--deadline", type=float, help="seconds after which no new run starts")
    p.add_argument("--grace", type=float, default=60.0, help="seconds after the deadline before runs are stopped")
    p.add_argument("--table-only", action="store_true")
    return p.parse_args(argv)


def default_backbones() -> list[str]:
    from guider.models import available, get_class

    return [b for b in available() if get_class(b).trainable]


def ensure_data(args) -> Path:
    if args.data:
        return args.data
    folder = args.out / "data" / f"small_noise{args.noise_ratio:g}"
    if not (folder / "dataset.json").exists():
        from guider.data.synthetic import make_synthetic

        make_synthetic(folder, preset="small", noise_ratio=args.noise_ratio, seed=0)
    return folder


def run_dir(out: Path, backbone: str, method: str, seed: int) -> Path:
    return out / "runs" / backbone / method / f"seed{seed}"


def parse_extra(entries: list[str]) -> dict[str, tuple[str, list[str]]]:
    """{'paper_w1': ('paper', ['kd.weight=1.0'])} from 'paper_w1=paper:kd.weight=1.0'."""
    extra = {}
    for entry in entries:
        label, _, rest = entry.partition("=")
        method, _, sets = rest.partition(":")
        if not label or method not in METHODS:
            raise SystemExit(f"--extra {entry!r}: expected LABEL=METHOD:KEY=VALUE;... with METHOD in {METHODS}")
        extra[label] = (method, [s for s in sets.split(";") if s])
    return extra


def command(args, data: Path, backbone: str, method: str, seed: int) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "guider.cli",
        "train",
        "--data",
        str(data),
        "--backbone",
        backbone,
        "--out",
        str(run_dir(args.out, backbone, method, seed)),
        "--seed",
        str(seed),
        "--device",
        args.device,
        "--no-progress",
    ]
    label_sets = []
    if method in args.extra_methods:
        method, label_sets = args.extra_methods[method]
        cmd += [x for s in label_sets for x in ("--set", s)]
    from guider.methods import method_class

    cmd += ["--method", method]
    own = ("train", "model", *method_class(method).sections)  # --set pairs the method has sections for
    cmd += [x for s in args.sets if s.split(".", 1)[0] in own for x in ("--set", s)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if args.patience:
        cmd += ["--patience", str(args.patience)]
    return cmd


def base_method(args, method: str) -> str:
    return args.extra_methods.get(method, (method,))[0]


def compatible(args, backbone: str, method: str) -> bool:
    """False for pairs the method refuses (damrs on a backbone it cannot wrap): not run."""
    from guider.methods import method_class

    return method_class(base_method(args, method)).backbone_problem(backbone) is None


def run_all(args, data: Path, backbones, methods, seeds) -> None:
    core = args.core.split(",")
    ordered = [(b, m, seeds[0]) for b in backbones for m in methods]
    ordered += [(b, m, s) for s in seeds[1:] for b in backbones for m in methods if m in core]
    ordered += [(b, m, s) for s in seeds[1:] for b in backbones for m in methods if m not in core]
    ordered = [key for key in ordered if compatible(args, key[0], key[1])]
    todo = [key for key in ordered if not (run_dir(args.out, *key) / "metrics.json").exists()]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "PYTHONUNBUFFERED": "1",
    }
    started, running = time.time(), {}
    print(f"{len(todo)} runs to do, {args.jobs} at a time", flush=True)
    while todo or running:
        late = args.deadline is not None and time.time() - started > args.deadline
        while todo and len(running) < args.jobs and not late:
            key = todo.pop(0)
            folder = run_dir(args.out, *key)
            if folder.exists():  # a run stopped earlier: start it afresh
                for f in folder.iterdir():
                    f.unlink()
            folder.mkdir(parents=True, exist_ok=True)
            log = open(folder / "train.log", "w")
            running[key] = (
                subprocess.Popen(command(args, data, *key), stdout=log, stderr=subprocess.STDOUT, env=env),
                time.time(),
                log,
            )
        for key, (proc, t0, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[key]
                status = "ok" if proc.returncode == 0 else f"FAILED rc={proc.returncode} (see train.log)"
                print(
                    f"{time.time() - started:7.0f}s {key[0]:9s} {key[1]:12s} seed{key[2]} "
                    f"{time.time() - t0:6.0f}s {status}",
                    flush=True,
                )
        if late and time.time() - started > args.deadline + args.grace:
            for key, (proc, _, log) in running.items():
                proc.kill()
                log.close()
                print(f"stopped unfinished run {key}", flush=True)
            print(f"deadline: {len(todo)} runs never started", flush=True)
            return
        time.sleep(0.5)


def collect(out: Path, backbones, methods, seeds) -> dict:
    results = {}
    for b in backbones:
        for m in methods:
            rows = []
            for s in seeds:
                path = run_dir(out, b, m, s) / "metrics.json"
                if path.exists():
                    rows.append(json.loads(path.read_text()))
            results[(b, m)] = rows
    return results


def fmt(values) -> str:
    if not values:
        return "-"
    return f"{np.mean(values):.4f}±{np.std(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def table(results, backbones, methods, seeds, guided=("paper",)) -> str:
    lines = [
        f"test Recall@20 / NDCG@20, mean±std over seeds {','.join(map(str, seeds))} "
        "(n = finished runs); 'paper>plain' compares means",
        "",
    ]
    head = "| method | " + " | ".join(f"{b} R@20 | {b} N@20" for b in backbones) + " |"
    lines += [head, "|" + "---|" * (1 + 2 * len(backbones))]
    for m in methods:
        cells = []
        for b in backbones:
            rows = results[(b, m)]
            n = f" (n={len(rows)})" if len(rows) != len(seeds) else ""
            cells += [fmt([r["test"]["recall@20"] for r in rows]) + n, fmt([r["test"]["ndcg@20"] for r in rows])]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for label in guided:
        lines += [
            "",
            f"| backbone | {label}>plain R@20 | {label}>plain N@20 | teacher R@20 ({label}) | "
            "AMSC precision | injected rate | lift | epochs run (plain / guided) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for b in backbones:
            plain, paper = results[(b, "none")], results[(b, label)]
            if not plain or not paper:
                lines.append(f"| {b} | - | - | - | - | - | - | - |")
                continue
            better = [
                np.mean([r["test"][k] for r in paper]) > np.mean([r["test"][k] for r in plain])
                for k in ("recall@20", "ndcg@20")
            ]
            det = [r["detection"]["injected_noise"] for r in paper if (r.get("detection") or {}).get("injected_noise")]
            teacher = [r["teacher"]["test"]["recall@20"] for r in paper if r.get("teacher")]
            lines.append(
                f"| {b} | {better[0]} | {better[1]} | {fmt(teacher)} | {fmt([d['precision'] for d in det])} | "
                f"{fmt([d['base_rate'] for d in det])} | {fmt([d['lift'] or 0.0 for d in det])} | "
                f"{np.mean([r['epochs_run'] for r in plain]):.0f} / {np.mean([r['epochs_run'] for r in paper]):.0f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    backbones = args.backbones.split(",") if args.backbones else default_backbones()
    methods, seeds = args.methods.split(","), [int(s) for s in args.seeds.split(",")]
    args.extra_methods = parse_extra(args.extra)
    unknown = set(methods) - set(METHODS) - set(args.extra_methods)
    if unknown:
        raise SystemExit(f"unknown method(s) {sorted(unknown)}; choose from {', '.join(METHODS)}")
    if not args.table_only:
        data = ensure_data(args)
        run_all(args, data, backbones, methods, seeds)
    guided = [m for m in methods if base_method(args, m) in COMPARED]
    text = table(collect(args.out, backbones, methods, seeds), backbones, methods, seeds, guided)
    write_text(args.out / "table.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
