"""`guider data synthetic`: generate the embedded synthetic dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from guider.data.noise import NOISE_MODES
    from guider.data.synthetic import PRESETS

    parser.add_argument("--out", required=True, type=Path, help="dataset folder to write (replaced if present)")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="small",
        help="small: ~2k users, 1k items, 25k interactions; baby: the sizes of Amazon Baby",
    )
    parser.add_argument("--users", type=int, help="number of users (default: the preset's)")
    parser.add_argument("--items", type=int, help="number of items (default: the preset's)")
    parser.add_argument("--noise-ratio", type=float, default=0.0, help="injected train noise, as a fraction of |train|")
    parser.add_argument(
        "--noise-mode",
        choices=NOISE_MODES,
        default="popular",
        help="noisy items drawn by train popularity (default) or uniformly",
    )
    parser.add_argument(
        "--misaligned-ratio", type=float, default=0.05, help="fraction of items whose image shows another item"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="synthetic", help="the dataset's name (default: synthetic)")
    parser.add_argument("--no-features", action="store_true", help="skip the text/image encoders (no *_feat.npy)")
    parser.add_argument("--progress", action="store_true", help="show encoder progress bars")


def run(args: argparse.Namespace) -> int:
    from guider.data.synthetic import make_synthetic

    folder = make_synthetic(
        args.out,
        preset=args.preset,
        users=args.users,
        items=args.items,
        noise_ratio=args.noise_ratio,
        noise_mode=args.noise_mode,
        misaligned_ratio=args.misaligned_ratio,
        seed=args.seed,
        encode=not args.no_features,
        progress=args.progress,
        name=args.name,
    )
    meta = json.loads((folder / "dataset.json").read_text())
    print(
        json.dumps(
            {"out": str(folder), **meta["statistics"], "noise": meta["noise"], "seconds": meta["generation_seconds"]}
        )
    )
    return 0
