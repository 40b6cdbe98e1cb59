"""The cost table `guider plan` reads, measured on one GPU in one short run, and how jobs pack.

    python benchmarks/gpu_costs.py --out results/gpu_costs                 # the card, ~8 minutes
    python benchmarks/gpu_costs.py --out /tmp/c --tiny --device cpu --steps 2 --warmup 1 \\
        --backbones bpr,lightgcn --packing-backbones lightgcn --packing-jobs 1,2   # the CPU smoke test

Data: the synthetic `baby` preset (19,445 users, 7,050 items, MMRec's Baby counts), generated
without the text/image encoders (`guider data synthetic --preset baby --no-features`), with
seeded Gaussian features of the real widths (384 text, 4096 image: the Amazon CNN features) saved
next to it; `--tiny` uses a 200-user, 150-item catalogue instead. The CSV's `dataset` column and
the log say so.

Costs: for every trainable backbone (`pop` has nothing to train) and the methods `none` and
`paper`, the trainer is built as benchmarks/bench_guider.py builds it (the run config its
defaults resolve to), `--warmup` steps run (epoch 0), then `--steps` steps are timed in epoch 1
(torch.cuda.synchronize at both ends) and extrapolated to the epoch: s/epoch = the epoch's own
overhead (hooks, shuffling, negative sampling: timed) + ceil(train rows / batch size) x s/step +
GUIDER's AMSC recalibration / its period (timed once). One full valid evaluation is timed, and
the peak GPU memory of the measurement (torch.cuda.max_memory_allocated, reset per measurement;
empty on CPU). Output: costs_gpu_<card>.csv (costs_cpu_<host>.csv on CPU) with the columns of
`guider plan --costs`: backbone, method, device, seconds_per_epoch, seconds_per_eval, dataset,
users, items, train_rows, peak_memory_gib, card, steps_timed.

Packing: for each `--packing-backbones` backbone and K in `--packing-jobs`, K processes (this
script in `--worker` mode) each build their own trainer on the same device, warm up, wait at a
file barrier until all K are ready, then count their training steps for the same time window;
aggregate steps/s = the sum over the K processes. packing_gpu_<card>.csv: backbone, jobs,
steps_per_second, speedup (over K = 1), per_process, window_s, overlap (the share of the window
all K processes ran together).

`--time-budget` (seconds, default 480) bounds the whole run: about 60 % of the time after the
data goes to the costs, the rest to packing; slow backbones get fewer timed steps, packing runs
go by K ascending and the largest K are skipped when short; an alarm ends the run at the budget.
The CSVs are rewritten after every measurement (always valid), and gpu_costs.log records the
card, torch and CUDA versions, the budget used and everything skipped. No network; the checkout
is put first on sys.path, so the installed package is not needed (its dependencies are).
"""

from __future__ import annotations

import argparse
import csv
import gc
import importlib
import importlib.util
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's guider, installed or not

# module -> the package that provides it (POT is optional: only `guider train` records its version)
REQUIRED = {"torch": "torch", "numpy": "numpy", "pandas": "pandas", "scipy": "scipy", "yaml": "pyyaml"}
REQUIRED.update({"PIL": "pillow", "tqdm": "tqdm"})
GUIDER_MODULES = ("guider.engine.trainer", "guider.data.synthetic", "guider.models", "guider.plan.costs")
COST_FIELDS = ["backbone", "method", "device", "seconds_per_epoch", "seconds_per_eval", "dataset", "users", "items"]
COST_FIELDS += ["train_rows", "peak_memory_gib", "card", "steps_timed"]
PACKING_FIELDS = ["backbone", "jobs", "steps_per_second", "speedup", "per_process", "window_s", "overlap"]
FEATURE_WIDTHS = {"text_feat.npy": 384, "image_feat.npy": 4096}
TINY = {"preset": "small", "users": 200, "items": 150}
WORKER_TAG = "GPU_COSTS_WORKER "
MARGIN_S = 4.0  # kept back from the budget for writing the outputs
COSTS_SHARE = 0.6  # of the time after the data, when packing is measured


class OutOfTime(BaseException):
    """The budget's alarm (a BaseException, so no library's `except Exception` swallows it)."""


class _Stop(Exception):
    """Raised inside a trainer step to end the steps being driven."""


# --- arguments and imports ---------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the CSVs, the log and the data")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, cpu (default cuda)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per measurement (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    parser.add_argument("--backbones", help="comma-separated (default: every trainable backbone)")
    parser.add_argument("--methods", default="none,paper", help="comma-separated (default none,paper)")
    parser.add_argument("--packing-backbones", default="lightgcn,freedom", help="'' for no packing")
    parser.add_argument("--packing-jobs", default="1,2,4,8", help="processes per device (default 1,2,4,8)")
    parser.add_argument(
        "--packing-window", type=float, help="seconds each packing process counts steps (default 8; --tiny 2)"
    )
    parser.add_argument("--tiny", action="store_true", help="a 200-user, 150-item catalogue (the CPU test)")
    parser.add_argument("--time-budget", type=float, default=480.0, help="seconds for everything (default 480)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads per process on CPU (default 2)")
    parser.add_argument("--data", type=Path, help="dataset folder (default OUT/data_baby or OUT/data_tiny)")
    worker = parser.add_argument_group("worker mode (started by this script for packing)")
    worker.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    worker.add_argument("--backbone", help=argparse.SUPPRESS)
    worker.add_argument("--jobs", type=int, default=1, help=argparse.SUPPRESS)
    worker.add_argument("--barrier", type=Path, help=argparse.SUPPRESS)
    worker.add_argument("--worker-id", type=int, default=0, help=argparse.SUPPRESS)
    worker.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.time_budget <= 0:
        parser.error("--steps must be >= 1, --warmup >= 0 and --time-budget > 0")
    return args


def missing_modules() -> list[str]:
    """Packages this script needs that cannot be imported (the first guider import error too)."""
    missing = [f"{module} (pip install {package})" for module, package in REQUIRED.items() if not _found(module)]
    if missing:
        return missing
    for module in GUIDER_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as err:
            return [f"{err.name or module} (needed by {module}; pip install -e {ROOT})"]
    return []


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# --- time --------------------------------------------------------------------------------
class Budget:
    """Seconds left of --time-budget; an alarm raises OutOfTime at its end (minus the margin)."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.monotonic()
        self.end = self.start + seconds - MARGIN_S

    def left(self, until: float | None = None) -> float:
        return min(self.end, until if until is not None else self.end) - time.monotonic()

    def used(self) -> float:
        return time.monotonic() - self.start

    def arm(self) -> None:
        signal.signal(signal.SIGALRM, _raise_out_of_time)
        signal.setitimer(signal.ITIMER_REAL, max(self.left(), 0.01))

    @staticmethod
    def disarm() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _raise_out_of_time(signum, frame):
    raise OutOfTime


class Log:
    """Lines to stdout and to OUT/gpu_costs.log (appended and flushed as they come)."""

    def __init__(self, path: Path):
        self.path = path
        path.write_text("")

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        with self.path.open("a") as handle:
            handle.write(line + "\n")


# --- device and data ---------------------------------------------------------------------
def describe_device(device) -> tuple[str, str, str]:
    """(device column, card name, file suffix) of the device."""
    import torch

    from guider.plan.costs import card_suffix

    if device.type == "cuda":
        card = torch.cuda.get_device_name(device)
        return "cuda", card, f"gpu_{card_suffix(card)}"
    return f"cpu ({torch.get_num_threads()} threads)", cpu_model(), f"cpu_{card_suffix(socket.gethostname() or 'cpu')}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def versions_line(device, card: str) -> str:
    import torch

    cuda = torch.version.cuda or "none"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else "none"
    return (
        f"card: {card}; device {device}; torch {torch.__version__}, CUDA {cuda}, cuDNN {cudnn}; "
        f"python {platform.python_version()}; host {socket.gethostname()}"
    )


def prepare_data(args, log: Log) -> tuple[Path, str]:
    """The synthetic catalogue (generated once, no encoders) with seeded random features of the
    real widths; (its folder, the CSV's description of it)."""
    import numpy as np

    from guider.data import load_dataset
    from guider.data.synthetic import make_synthetic

    preset = TINY if args.tiny else {"preset": "baby", "users": None, "items": None}
    folder = args.data or args.out / ("data_tiny" if args.tiny else "data_baby")
    if not (folder / "dataset.json").is_file():
        log(f"generating the synthetic {'tiny' if args.tiny else 'baby'} catalogue into {folder} (no encoders)")
        make_synthetic(
            folder, preset=preset["preset"], users=preset["users"], items=preset["items"], encode=False, seed=0
        )
    n_items = load_dataset(folder).n_items
    rng = np.random.default_rng(0)
    for name, width in FEATURE_WIDTHS.items():
        path = folder / name
        if not path.is_file() or np.load(path, mmap_mode="r").shape != (n_items, width):
            np.save(path, rng.normal(size=(n_items, width)).astype(np.float32))
    what = "synthetic tiny catalogue (200 users, 150 items)" if args.tiny else "synthetic baby preset"
    return folder, f"{what}, random features 384 text / 4096 image (no encoders)"


# --- driving a trainer -------------------------------------------------------------------
def make_trainer(ds, backbone: str, method: str, out: Path, device):
    """The trainer bench_guider.trainer_for builds (the run config the backbone's and method's
    defaults resolve to, no overrides), on `device` (trainer_for builds it on the CPU)."""
    from guider.config import resolve_run_config
    from guider.engine.trainer import Trainer

    return Trainer(ds, out, resolve_run_config(backbone, method=method), device, progress=False)


def synchronizer(device):
    import torch

    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def drive(trainer, on_step, first_epoch: int, on_epoch=None) -> int:
    """Run epochs from `first_epoch`, calling on_step(count) before each step and on_epoch()
    before each epoch, until on_step raises _Stop; return the next epoch to run."""
    step, count, epoch = trainer._step, 0, first_epoch

    def hooked(batch, ep, index):
        nonlocal count
        on_step(count)
        count += 1
        return step(batch, ep, index)

    trainer._step = hooked
    try:
        while True:
            if on_epoch:
                on_epoch()
            try:
                trainer.run_epoch(epoch)
            except _Stop:
                return epoch + 1
            epoch += 1
    finally:
        del trainer._step  # back to the class's method


def run_steps(trainer, steps: int, sync, first_epoch: int) -> tuple[float, float, int]:
    """(seconds of `steps` steps, seconds before the first step of the epoch, next epoch)."""
    marks: dict[str, float] = {}

    def on_epoch():
        if "start" not in marks:
            sync()
            marks["epoch"] = time.perf_counter()

    def on_step(count):
        if count == 0 or count == steps:
            sync()
            marks["start" if count == 0 else "stop"] = time.perf_counter()
        if count == steps:
            raise _Stop

    next_epoch = drive(trainer, on_step, first_epoch, on_epoch)
    return marks["stop"] - marks["start"], marks["start"] - marks["epoch"], next_epoch


def timed(fn, sync) -> float:
    sync()
    started = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - started


def amsc_seconds(trainer, sync) -> tuple[float, int]:
    """Seconds of one AMSC recalibration (GUIDER) and its period; (0, 1) without AMSC."""
    objective = trainer.method
    if getattr(objective, "amsc", None) is None:
        return 0.0, 1
    seconds = timed(lambda: objective.recalibrate(objective.amsc_config.warmup_epochs), sync)
    return seconds, objective.amsc_config.every


def eval_seconds(trainer, sync, left: float) -> float:
    """One full valid evaluation; a second one (warm) when the first was cheap enough."""
    first = timed(lambda: trainer.evaluate_model("valid"), sync)
    return timed(lambda: trainer.evaluate_model("valid"), sync) if first * 3 < left else first


# --- the cost table ----------------------------------------------------------------------
def measure(ds, backbone: str, method: str, args, device, until: float, workdir: Path) -> dict:
    """One cost row: s/epoch (extrapolated from timed steps), s/eval, peak GPU memory."""
    import torch

    sync = synchronizer(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer = make_trainer(ds, backbone, method, workdir / f"{backbone}_{method}", device)
    warm = 0.0
    if args.warmup:
        warm = run_steps(trainer, args.warmup, sync, 0)[0] / args.warmup
    left = until - time.monotonic()
    steps = max(1, min(args.steps, int(0.7 * left / warm))) if warm > 0 else args.steps
    seconds, overhead, _ = run_steps(trainer, steps, sync, 1)
    amsc, every = amsc_seconds(trainer, sync)
    n_batches = math.ceil(len(trainer.inputs.train_users) / trainer.tcfg.batch_size)
    per_eval = eval_seconds(trainer, sync, until - time.monotonic())
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del trainer
    free(device)
    return {
        "seconds_per_epoch": overhead + n_batches * seconds / steps + amsc / every,
        "seconds_per_eval": per_eval,
        "peak_memory_gib": "" if peak is None else round(peak, 3),
        "steps_timed": steps,
    }


def free(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    """The whole table, atomically (a reader never sees half of it)."""
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def measure_costs(ds, plan: list[tuple[str, str]], context: dict, until: float, floor: float, log: Log) -> list[dict]:
    """Every (backbone, method) of `plan` until `until`; past it, with the fewest steps while
    more than `floor` seconds of the budget remain; the CSV is rewritten after each row."""
    args, device, budget = context["args"], context["device"], context["budget"]
    rows: list[dict] = []
    for index, (backbone, method) in enumerate(plan):
        share = max(budget.left(until), 0.0) / (len(plan) - index)
        if budget.left() - floor < 2.0:
            log(f"skipped {backbone}/{method}: out of time ({budget.left():.0f} s left)")
            continue
        try:
            row = measure(ds, backbone, method, args, device, time.monotonic() + max(share, 1.0), context["work"])
        except OutOfTime:
            raise
        except Exception as err:  # a backbone that cannot run here (memory, a method it refuses)
            log(f"skipped {backbone}/{method}: {type(err).__name__}: {first_line(err)}")
            free(device)
            continue
        rows.append({**context["columns"], "backbone": backbone, "method": method, **row})
        write_csv(context["costs_csv"], COST_FIELDS, rows)
        log(
            f"{backbone:9s} {method:6s} s/epoch {row['seconds_per_epoch']:9.4f}  s/eval {row['seconds_per_eval']:8.4f}"
            f"  peak {row['peak_memory_gib'] or '-'} GiB  steps {row['steps_timed']}  ({budget.used():.0f} s used)"
        )
    return rows


def first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


# --- packing -----------------------------------------------------------------------------
def worker_main(args) -> int:
    """One packing process: build, warm up, wait at the barrier, count steps for --window s."""
    import torch

    from guider.data import load_dataset
    from guider.engine.trainer import use_run_determinism

    if args.deadline:
        signal.signal(signal.SIGALRM, _raise_out_of_time)
        signal.setitimer(signal.ITIMER_REAL, max(args.deadline - time.time(), 0.01))
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    use_run_determinism(device)
    sync = synchronizer(device)
    trainer = make_trainer(
        load_dataset(args.data), args.backbone, "none", args.barrier / f"run{args.worker_id}", device
    )
    epoch = run_steps(trainer, max(args.warmup, 1), sync, 0)[2]
    (args.barrier / f"ready{args.worker_id}").touch()
    while len(list(args.barrier.glob("ready*"))) < args.jobs:
        time.sleep(0.02)
    sync()
    started, wall_start = time.perf_counter(), time.time()
    count = {"steps": 0}

    def on_step(n):
        if time.perf_counter() - started >= args.packing_window:
            raise _Stop
        count["steps"] += 1

    drive(trainer, on_step, epoch)
    sync()
    seconds = time.perf_counter() - started
    result = {"steps": count["steps"], "seconds": seconds, "start": wall_start, "stop": wall_start + seconds}
    print(WORKER_TAG + json.dumps({**result, "steps_per_second": count["steps"] / seconds}), flush=True)
    return 0


def start_workers(backbone: str, jobs: int, window: float, context: dict, folder: Path) -> list:
    """`jobs` worker processes (their own sessions), output to folder/worker<k>.out."""
    args = context["args"]
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--out", str(args.out)]
    command += ["--backbone", backbone, "--jobs", str(jobs), "--barrier", str(folder)]
    command += ["--packing-window", f"{window:.2f}", "--device", args.device, "--warmup", str(args.warmup)]
    command += ["--threads", str(args.threads), "--data", str(context["data"])]
    command += ["--deadline", f"{time.time() + context['budget'].left():.2f}"]
    processes = []
    for k in range(jobs):
        with (folder / f"worker{k}.out").open("w") as out:
            processes.append(
                subprocess.Popen(
                    [*command, "--worker-id", str(k)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    start_new_session=True,
                )
            )
    return processes


def collect(processes: list, folder: Path, timeout: float) -> list[dict]:
    """Each worker's result; RuntimeError with the last line of the first worker that fails
    (the others are killed at once, so none waits at the barrier for it)."""
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
            failed = [k for k, p in enumerate(processes) if p.poll() not in (None, 0)]
            if failed:
                break
            time.sleep(0.05)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return [_worker_result(folder / f"worker{k}.out", p.returncode) for k, p in enumerate(processes)]


def _worker_result(path: Path, returncode: int) -> dict:
    lines = path.read_text(errors="replace").splitlines()
    tagged = [line for line in lines if line.startswith(WORKER_TAG)]
    if returncode != 0 or not tagged:
        tail = [line for line in lines if line.strip()][-1:] or ["no output"]
        raise RuntimeError(f"a worker exited {returncode}: {tail[0][:300]}")
    return json.loads(tagged[-1][len(WORKER_TAG) :])


def pack_once(backbone: str, jobs: int, window: float, context: dict) -> dict:
    """Aggregate steps/s of `jobs` concurrent workers, and how long they overlapped."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=context["work"]) as tmp:
        started = time.monotonic()
        processes = start_workers(backbone, jobs, window, context, Path(tmp))
        results = collect(processes, Path(tmp), context["budget"].left())
        context["startup"] = max(context.get("startup", 0.0), time.monotonic() - started - window)
    overlap = max(0.0, min(r["stop"] for r in results) - max(r["start"] for r in results))
    return {
        "backbone": backbone,
        "jobs": jobs,
        "steps_per_second": sum(r["steps_per_second"] for r in results),
        "per_process": sum(r["steps_per_second"] for r in results) / jobs,
        "window_s": round(window, 2),
        "overlap": round(overlap / max(r["seconds"] for r in results), 3),
    }


def measure_packing(backbones: list[str], jobs_list: list[int], context: dict, log: Log) -> list[dict]:
    """K ascending, every backbone per K; a run that cannot fit the time left is skipped."""
    budget, rows = context["budget"], []
    runs = [(backbone, jobs) for jobs in sorted(jobs_list) for backbone in backbones]
    for index, (backbone, jobs) in enumerate(runs):
        startup = context.get("startup", 20.0)
        window = min(context["window"], max(1.0, budget.left() / (len(runs) - index) - startup))
        if budget.left() < startup + min(window, 1.0) + 2.0:
            log(f"skipped packing {backbone} x {jobs}: out of time ({budget.left():.0f} s left)")
            continue
        try:
            row = pack_once(backbone, jobs, window, context)
        except OutOfTime:
            raise
        except Exception as err:
            log(f"skipped packing {backbone} x {jobs}: {first_line(err)}")
            continue
        rows.append(row)
        write_csv(context["packing_csv"], PACKING_FIELDS, with_speedups(rows))
        log(
            f"packing {backbone:9s} x {jobs}: {row['steps_per_second']:9.2f} steps/s in all "
            f"(overlap {row['overlap']:.0%}; {budget.used():.0f} s used)"
        )
    return with_speedups(rows)


def with_speedups(rows: list[dict]) -> list[dict]:
    """Each row's aggregate steps/s over its backbone's 1-job rate (empty without one)."""
    single = {r["backbone"]: r["steps_per_second"] for r in rows if r["jobs"] == 1}
    return [
        {**r, "speedup": round(r["steps_per_second"] / single[r["backbone"]], 3) if r["backbone"] in single else ""}
        for r in rows
    ]


# --- main --------------------------------------------------------------------------------
def work_lists(args) -> tuple[list[tuple[str, str]], list[str], list[int]]:
    """(backbone, method) pairs to time, packing backbones, packing Ks; ValueError for unknown names."""
    from guider.methods import available_methods
    from guider.models import available, get_class

    names = args.backbones.split(",") if args.backbones else [n for n in available() if get_class(n).trainable]
    packing = [b for b in args.packing_backbones.split(",") if b]
    methods = [m for m in args.methods.split(",") if m]
    unknown = [n for n in [*names, *packing] if n not in available()] + [
        m for m in methods if m not in available_methods()
    ]
    if unknown:
        raise ValueError(f"unknown backbones or methods {unknown}; backbones: {', '.join(available())}")
    try:
        jobs = sorted({int(k) for k in args.packing_jobs.split(",") if k})
    except ValueError:
        raise ValueError(f"--packing-jobs {args.packing_jobs!r}: comma-separated whole numbers") from None
    if any(k < 1 for k in jobs):
        raise ValueError("--packing-jobs: each K must be >= 1")
    return [(b, m) for b in names if b != "pop" for m in methods], packing, jobs


def main(argv=None) -> int:
    args = parse_args(argv)
    missing = missing_modules()
    if missing:
        print(f"gpu_costs.py: missing: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.worker:
        return worker_main(args)
    return run(args)


def run(args) -> int:
    import torch

    from guider.data import TRAIN, load_dataset
    from guider.engine.trainer import use_run_determinism

    budget = Budget(args.time_budget)
    try:
        plan, packing, jobs = work_lists(args)
    except ValueError as err:
        print(f"gpu_costs.py: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    log = Log(args.out / "gpu_costs.log")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        log(f"gpu_costs.py: --device {args.device} but torch {torch.__version__} sees no CUDA device")
        return 2
    torch.set_num_threads(args.threads)
    use_run_determinism(device)
    column, card, suffix = describe_device(device)
    log(versions_line(device, card))
    log(f"time budget {args.time_budget:.0f} s; steps {args.steps} after {args.warmup} warm-up steps")
    work = args.out / "work"
    work.mkdir(exist_ok=True)
    window = args.packing_window or (2.0 if args.tiny else 8.0)
    context = {"args": args, "device": device, "budget": budget, "work": work, "window": window}
    context.update(costs_csv=args.out / f"costs_{suffix}.csv", packing_csv=args.out / f"packing_{suffix}.csv")
    write_csv(context["costs_csv"], COST_FIELDS, [])  # valid (headers only) from the start
    write_csv(context["packing_csv"], PACKING_FIELDS, [])
    budget.arm()
    try:
        context["data"], dataset = prepare_data(args, log)
        ds = load_dataset(context["data"])
        train_rows = len(ds.split(TRAIN)[0])
        log(f"data {context['data']}: {dataset}; {ds.n_users} users, {ds.n_items} items, {train_rows} train rows")
        context["columns"] = {"device": column, "card": card, "dataset": dataset}
        context["columns"].update(users=ds.n_users, items=ds.n_items, train_rows=train_rows)
        phases(ds, (plan, packing, jobs), context, log)
    except OutOfTime:
        log(f"the time budget ran out after {budget.used():.0f} s; the CSVs hold what was measured")
    finally:
        budget.disarm()
    log(f"done in {budget.used():.0f} s of {args.time_budget:.0f} s: {context['costs_csv']}")
    return 0


def phases(ds, work: tuple, context: dict, log: Log) -> None:
    """The cost table, then the packing runs, each within its share of the budget."""
    budget = context["budget"]
    plan, packing, jobs = work
    share = COSTS_SHARE if packing and jobs else 1.0
    until = time.monotonic() + share * budget.left()
    floor = 0.25 * budget.left() if packing and jobs else 0.0
    rows = measure_costs(ds, plan, context, until, floor, log)
    log(f"cost table: {len(rows)} of {len(plan)} rows -> {context['costs_csv']}")
    if packing and jobs:
        free(context["device"])
        rows = measure_packing(packing, jobs, context, log)
        log(f"packing: {len(rows)} of {len(packing) * len(jobs)} runs -> {context['packing_csv']}")


if __name__ == "__main__":
    sys.exit(main())
