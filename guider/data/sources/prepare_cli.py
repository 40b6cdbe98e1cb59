"""`guider data prepare NAME [--out DIR]`: downloaded files -> an MMRec-compatible dataset folder.

Reads resources/NAME/ (what `guider data download NAME` fetched, or files placed there by
hand), applies the protocol (cleaning, k-core, re-indexing, seeded split), and writes
`<NAME>.inter`, the id maps, `item_content.csv` (+ images/) and `dataset.json` with the
provenance (sha256 of every input) and the statistics, which are printed next to
the published statistics.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from guider.data.download.cli import FAILED_IMAGES_FILE, kind_module
from guider.data.download.http import file_sha256
from guider.data.download.registry import DatasetSpec, get_dataset
from guider.data.format.dataset import Dataset
from guider.data.sources.prepared import ItemContent, write_prepared
from guider.data.sources.preprocess import Interactions

log = logging.getLogger(__name__)
APPROXIMATE_TOLERANCE = 0.05  # relative, for the statistics docs/specification.md gives as "~"
OPTIONAL_ROLES = {"image_features"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="dataset in the registry: baby, sports, clothing, microlens")
    parser.add_argument(
        "--resources", type=Path, default=Path("resources"), help="inputs are read from RESOURCES/NAME/"
    )
    parser.add_argument("--out", type=Path, help="dataset folder to write (default: results/data/NAME)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-user split")
    parser.add_argument("--k-core", type=int, help="override the registry's k-core (protocol: 5)")
    parser.add_argument(
        "--strict", action="store_true", help="fail when the statistics differ from the specification's"
    )
    parser.add_argument("--registry", type=Path, help="dataset registry YAML (default: guider/data/datasets.yaml)")


def run(args: argparse.Namespace) -> int:
    spec = get_dataset(args.name, args.registry)
    folder = args.resources / spec.name
    inputs = check_inputs(spec, folder)
    k = spec.k_core if args.k_core is None else args.k_core
    interactions, content = kind_module(spec).prepare(spec, folder, seed=args.seed, k=k)
    stats = Dataset(spec.name, interactions.n_users, interactions.n_items, interactions.table).statistics()
    check = compare_statistics(stats, spec.expected)
    out = args.out or Path("results/data") / spec.name
    print_statistics(spec, stats, check, out)
    if args.strict and not check["match"]:
        raise ValueError(
            f"{spec.name}: statistics differ from the published statistics ({check['differences']}); nothing written"
        )
    meta = dataset_meta(spec, folder, inputs, interactions, content, k=k, seed=args.seed, check=check)
    write_prepared(out, spec.name, interactions, content, meta)
    return 0


def check_inputs(spec: DatasetSpec, folder: Path) -> dict[str, Path]:
    """{role: path} of the input files; a missing required one is an error saying how to get it."""
    inputs = {f.role: folder / f.name for f in spec.files if (folder / f.name).exists()}
    missing = [f.name for f in spec.files if f.role not in inputs and f.role not in OPTIONAL_ROLES]
    if missing:
        raise FileNotFoundError(
            f"{folder}: missing {', '.join(missing)}; run `guider data download {spec.name}` "
            f"or place the files there by hand (docs/data.md)"
        )
    return inputs


def dataset_meta(
    spec: DatasetSpec,
    folder: Path,
    inputs: dict[str, Path],
    interactions: Interactions,
    content: ItemContent,
    *,
    k: int,
    seed: int,
    check: dict[str, Any],
) -> dict[str, Any]:
    files = {
        role: {"name": path.name, "path": str(path.resolve()), "size": path.stat().st_size, "sha256": file_sha256(path)}
        for role, path in inputs.items()
    }
    failed = folder / FAILED_IMAGES_FILE
    return {
        "name": spec.name,
        "source": {
            "registry": spec.name,
            "kind": spec.kind,
            "description": spec.description,
            "homepage": spec.homepage,
            "resources": str(folder.resolve()),
            "files": files,
            "failed_images_log": str(failed.resolve()) if failed.exists() else None,
        },
        "protocol": {
            "k_core": k,
            "split_seed": seed,
            "dedupe_on": ["user", "item", "timestamp"],
            "text": "title brand categories[0] description (MMRec)" if spec.kind == "amazon" else "video title",
            "image": "product image (imUrl)" if spec.kind == "amazon" else "video cover",
        },
        "preprocess": interactions.counts,
        "content": content.report,
        "expected_statistics": spec.expected,
        "statistics_check": check,
        "features": {},
    }


def compare_statistics(stats: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """Users/items/interactions against the published statistics (exact, or within 5% when approximate)."""
    approximate = bool(expected.get("approximate"))
    differences = {}
    for key in ("users", "items", "interactions"):
        if key not in expected:
            continue
        want, got = int(expected[key]), int(stats[key])
        off = abs(got - want) > (APPROXIMATE_TOLERANCE * want if approximate else 0)
        if off:
            differences[key] = {"expected": want, "got": got}
    return {"match": not differences, "approximate": approximate, "differences": differences}


def print_statistics(spec: DatasetSpec, stats: dict[str, Any], check: dict[str, Any], out: Path) -> None:
    print(f"{spec.name} -> {out}")
    print(
        f"  users {stats['users']:,}  items {stats['items']:,}  interactions {stats['interactions']:,}  "
        f"(train {stats['train']:,} / valid {stats['valid']:,} / test {stats['test']:,})  "
        f"sparsity {100 * stats['sparsity']:.3f}%"
    )
    want = spec.expected
    tilde = "~" if want.get("approximate") else ""
    print(
        f"  the specification: users {tilde}{want.get('users', 0):,}  items {tilde}{want.get('items', 0):,}  "
        f"interactions {tilde}{want.get('interactions', 0):,}  -> {'match' if check['match'] else 'DIFFERENT'}"
    )
    if not check["match"]:
        log.warning("%s: statistics differ from the published statistics: %s", spec.name, check["differences"])
