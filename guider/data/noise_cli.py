"""`guider data noise --data DIR --ratio R --out DIR2`: a copy of a dataset with injected noise.

The noise-robustness study trains on copies of a prepared dataset in which
round(R * |train|) false-positive (user, item) pairs were added to the train split and
labelled `is_noise=1` (guider.data.noise.inject_noise). Valid and test splits, features
and the dataset's name are unchanged, so runs on the copy are comparable with runs on
the original; dataset.json records the ratio, mode and seed under `noise`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="dataset folder to copy (MMRec-compatible)")
    parser.add_argument(
        "--ratio", required=True, type=float, help="noisy pairs to add, as a fraction of the train split"
    )
    parser.add_argument("--out", required=True, type=Path, help="folder of the noisy copy (replaced atomically)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise draw")
    parser.add_argument(
        "--mode",
        default="popular",
        choices=["popular", "uniform"],
        help="items drawn in proportion to train popularity (default) or uniformly",
    )


def run(args: argparse.Namespace) -> int:
    from guider.data import load_dataset, save_dataset
    from guider.data.noise import inject_noise

    if args.out.resolve() == args.data.resolve():
        raise ValueError(f"--out {args.out} is the input folder; write the noisy copy elsewhere")
    ds = load_dataset(args.data, drop_cold_eval=False)
    noisy = inject_noise(ds, args.ratio, seed=args.seed, mode=args.mode)
    noisy.meta = {**noisy.meta, "derived_from": str(args.data)}
    save_dataset(noisy, args.out)
    added = noisy.meta["noise"]["n_noise"]
    print(f"{args.out}: {added} noisy train pairs added ({args.ratio:g} x {len(ds.split(0)[0])} train, {args.mode})")
    return 0
