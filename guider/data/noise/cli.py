"""`guider data noise --data DIR --kind KIND [--ratio R] --out DIR2`: a noisy copy of a dataset.

The noise-robustness study trains on copies of a prepared dataset with one kind of noise
in the train split (guider.data.noise): `add` appends round(R * |train|) false-positive
pairs labelled `is_noise=1`; `delete` removes round(R * |train|) train rows (never a
user's last one) and lists them in noise_deleted.tsv; `modality` gives round(R * n_items)
items the text and/or image feature of a random other item; `natural` labels train rows
rated <= --max-noisy-rating as noisy (no ratio) and, with --eval-min-rating, keeps only
well-rated valid/test rows. Otherwise valid and test, the features and the dataset's name
are unchanged, so runs on the copy are comparable with runs on the original; dataset.json
records the kind, ratio, seed and what changed under `noise`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from guider.data.noise import noise_kind, noise_kinds

    kinds = noise_kinds()
    parser.add_argument("--data", required=True, type=Path, help="dataset folder to copy (MMRec-compatible)")
    parser.add_argument("--out", required=True, type=Path, help="folder of the noisy copy (replaced atomically)")
    parser.add_argument("--kind", default="add", choices=kinds, help="noise kind (default: add)")
    parser.add_argument(
        "--ratio",
        type=float,
        help="the kind's fraction (add/delete: of the train rows; modality: of the items); some kinds take none",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise draw")
    for name in kinds:
        noise_kind(name).add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from guider.data import load_dataset, save_dataset
    from guider.data.noise import make_noisy_copy

    if args.out.resolve() == args.data.resolve():
        raise ValueError(f"--out {args.out} is the input folder; write the noisy copy elsewhere")
    ds = load_dataset(args.data, drop_cold_eval=False)
    options = {key: value for key, value in vars(args).items() if key not in ("kind", "ratio", "seed")}
    noisy, tables = make_noisy_copy(ds, args.kind, ratio=args.ratio, seed=args.seed, **options)
    noisy.meta = {**noisy.meta, "derived_from": str(args.data)}
    save_dataset(noisy, args.out, extra_tables=tables)
    print(f"{args.out}: {describe(noisy.meta['noise'], n_train=len(ds.split(0)[0]), n_items=ds.n_items)}")
    return 0


def describe(noise: dict, *, n_train: int, n_items: int) -> str:
    """One line on what a noisy copy changed."""
    kind = noise["kind"]
    if kind not in ("add", "delete", "modality", "natural"):
        return f"noise kind {kind}: " + ", ".join(f"{k} {v}" for k, v in noise.items() if k != "kind")
    if kind == "add":
        return f"{noise['n_noise']} noisy train pairs added ({noise['ratio']:g} x {n_train} train, {noise['mode']})"
    if kind == "delete":
        return f"{noise['n_deleted']} train rows deleted ({noise['ratio']:g} x {n_train} train)"
    if kind == "modality":
        return (
            f"{len(noise['items'])} items' {noise['modality']} features swapped ({noise['ratio']:g} x {n_items} items)"
        )
    return (
        f"{noise['n_noise']} train rows rated <= {noise['max_noisy_rating']:g} labelled noisy, "
        f"{noise['n_eval_dropped']} valid/test rows dropped"
    )
