"""`guider features text --data DIR [--encoder NAME]`: sentence embeddings of the items' texts.

Reads DIR/item_content.csv (itemID, text, image), encodes the texts in batches (GPU when
present), writes DIR/text_feat.npy (row i = item i) and records the encoder in
DIR/dataset.json. Cached by content + encoder: a rerun is instant.
"""

from __future__ import annotations

import argparse
import logging
import time

from guider.data.sources.prepared import read_content
from guider.features.cache import CACHE_SUBDIR, FeatureCache, text_fingerprint
from guider.features.cli_options import add_common_arguments
from guider.features.output import check_item_count, write_features

log = logging.getLogger(__name__)
DEFAULT_ENCODER = "all-MiniLM-L6-v2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, batch_size=64)
    parser.add_argument(
        "--encoder",
        default=DEFAULT_ENCODER,
        help=f"sentence-transformers model name or local folder (default {DEFAULT_ENCODER}, bundled offline)",
    )


def run(args: argparse.Namespace) -> int:
    content = read_content(args.data)
    check_item_count(args.data, len(content))
    texts = content["text"].tolist()
    cache = FeatureCache(args.cache_dir or args.data / CACHE_SUBDIR)
    fingerprint = text_fingerprint(texts)
    cached = None if args.no_cache else cache.load("text", args.encoder, fingerprint)
    start = time.perf_counter()
    if cached is not None:
        features = cached[0]
        log.info(
            "text features of %d items from the cache (%s)", len(texts), cache.path("text", args.encoder, fingerprint)
        )
    else:
        from guider.features.text import encode_texts

        features = encode_texts(
            texts,
            model_name=args.encoder,
            device=args.device,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
        if not args.no_cache:
            cache.store("text", args.encoder, fingerprint, features, [])
    seconds = time.perf_counter() - start
    empty = [i for i, text in enumerate(texts) if not text.strip()]
    info = {
        "encoder": args.encoder,
        "dim": int(features.shape[1]),
        "fingerprint": fingerprint,
        "source": "item_content.csv text",
        "empty_text_items": empty,
    }
    path = write_features(args.data, "text", features, info)
    print(
        f"{path}: {features.shape[0]} items x {features.shape[1]} ({args.encoder}) in {seconds:.1f} s"
        + (" (cached)" if cached is not None else "")
    )
    return 0
