"""Command-line options every feature extractor shares (`guider features text|image`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from guider.features.cache import CACHE_SUBDIR


def add_common_arguments(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """--data, --device, --batch-size, --cache-dir, --no-cache, --no-progress."""
    parser.add_argument("--data", required=True, type=Path, help="dataset folder holding item_content.csv")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA when present)")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--cache-dir", type=Path, help=f"feature cache (default: DATA/{CACHE_SUBDIR})")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    parser.add_argument("--no-progress", action="store_true")
