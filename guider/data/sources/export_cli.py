"""`guider data export SRC --out DIR [--format mmrec]`: a dataset folder in MMRec's exact layout.

MMRec reads `data/<dataset>/<dataset>.inter` (tab-separated, columns userID itemID rating
timestamp x_label), `image_feat.npy`, `text_feat.npy` and keeps `u_id_mapping.csv` /
`i_id_mapping.csv` beside them. The export writes exactly that: extra columns such as
`is_noise` are left out, features are float32, the id maps are copied (or written as
the identity when SRC has none). Rows are exported as they are (no cold-user filtering).
The dataset name defaults to the name of DIR, since MMRec looks for DIR/DIR.inter.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from guider.data.format.dataset import MMREC_COLUMNS, Dataset, check_name
from guider.data.format.mmrec import FEATURE_FILES, load_dataset
from guider.data.sources.prepared import ITEM_MAP_FILE, USER_MAP_FILE
from guider.runs.atomic import staging_dir

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="dataset folder to export")
    parser.add_argument("--out", required=True, type=Path, help="folder to write (MMRec: data/<name>)")
    parser.add_argument("--format", default="mmrec", choices=["mmrec"], help="target layout")
    parser.add_argument("--name", help="dataset name, i.e. the .inter file's stem (default: the name of --out)")


def run(args: argparse.Namespace) -> int:
    ds = load_dataset(args.src, drop_cold_eval=False)
    name = args.name or args.out.name
    if name != args.out.name:
        log.warning("MMRec expects data/<name>/<name>.inter; %s holds %s.inter", args.out, name)
    export_mmrec(ds, args.src, args.out, name)
    print(
        f"{args.out}: {name}.inter ({len(ds.inter):,} rows), "
        + ", ".join(f for key, f in FEATURE_FILES.items() if getattr(ds, key) is not None)
    )
    return 0


def export_mmrec(ds: Dataset, src: Path, out: Path, name: str) -> Path:
    """Write `ds` to `out` in MMRec's layout, atomically (temporary sibling folder, then rename)."""
    check_name(name, f"exporting to {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = staging_dir(out)
    try:
        staged = scratch / out.name
        staged.mkdir()
        columns = [c for c in MMREC_COLUMNS if c in ds.inter.columns]  # rating, timestamp only where present
        ds.inter[columns].to_csv(staged / f"{name}.inter", sep="\t", index=False)
        for key, file_name in FEATURE_FILES.items():
            features = getattr(ds, key)
            if features is not None:
                np.save(staged / file_name, np.ascontiguousarray(features, dtype=np.float32))
        _write_id_map(src / USER_MAP_FILE, staged / USER_MAP_FILE, ("user_id", "userID"), ds.n_users)
        _write_id_map(src / ITEM_MAP_FILE, staged / ITEM_MAP_FILE, ("asin", "itemID"), ds.n_items)
        if out.exists():
            out.rename(scratch / "previous")
        staged.rename(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def _write_id_map(source: Path, target: Path, columns: tuple[str, str], n: int) -> None:
    if source.exists():
        shutil.copy2(source, target)
        return
    ids = np.arange(n)
    pd.DataFrame({columns[0]: ids, columns[1]: ids}).to_csv(target, sep="\t", index=False)
