"""`guider data import --format lattice|mmrec SRC --out DIR`."""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from guider.data.format.mmrec import load_dataset, save_dataset
from guider.data.sources.lattice import read_lattice

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="folder to import")
    parser.add_argument("--format", required=True, choices=["lattice", "mmrec"], help="layout of SRC")
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to write")
    parser.add_argument("--name", help="dataset name (default: the folder name of SRC)")


def run(args: argparse.Namespace) -> int:
    if args.format == "lattice":
        ds = read_lattice(args.src, name=args.name)
    else:
        ds = load_dataset(args.src)
        ds.meta.setdefault("source", {"format": "mmrec", "path": str(args.src)})
        if args.name:
            ds.name = args.name
    save_dataset(ds, args.out)
    if args.format == "mmrec":
        _copy_id_maps(args.src, args.out)
    print(f"{args.out}: {ds.statistics()}")
    return 0


def _copy_id_maps(src: Path, out: Path) -> None:
    """Keep MMRec's u_id_mapping.csv / i_id_mapping.csv beside the imported dataset."""
    for path in sorted(src.glob("*_id_mapping.csv")):
        shutil.copy2(path, out / path.name)
