"""`guider features image --data DIR [--encoder NAME]`: image features of the items.

Encoders: `efficientnet_lite0` (1280-d, offline default), `resnet50` (2048-d), `vgg16`
(4096-d fc7) on the images listed in DIR/item_content.csv; or `amazon_cnn`, the 4096-d
features published with the Amazon data (image_features_<Category>.b, located through
dataset.json's provenance or --features-file). Items without a usable image get the mean
feature; their ids are recorded in dataset.json (features.image.imputed_items). Writes
DIR/image_feat.npy atomically; cached by content + encoder.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd

from guider.data.format.mmrec import read_dataset_meta
from guider.data.sources.prepared import ITEM_MAP_FILE, read_content
from guider.features.amazon_cnn import read_amazon_cnn
from guider.features.cache import CACHE_SUBDIR, FeatureCache, file_fingerprint, image_fingerprint
from guider.features.cli_options import add_common_arguments
from guider.features.output import check_item_count, write_features

log = logging.getLogger(__name__)
NETWORKS = ("efficientnet_lite0", "resnet50", "vgg16")
AMAZON_CNN = "amazon_cnn"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, batch_size=32)
    parser.add_argument("--encoder", default="efficientnet_lite0", choices=[*NETWORKS, AMAZON_CNN])
    parser.add_argument(
        "--features-file",
        type=Path,
        help="image_features_<Category>.b for amazon_cnn (default: the one recorded in dataset.json)",
    )
    parser.add_argument("--image-size", type=int, help="crop size (default: the model's 224)")


def run(args: argparse.Namespace) -> int:
    content = read_content(args.data)
    check_item_count(args.data, len(content))
    cache = FeatureCache(args.cache_dir or args.data / CACHE_SUBDIR)
    encoder_key = args.encoder + (f"@{args.image_size}" if args.image_size else "")
    if args.encoder == AMAZON_CNN:
        extract, fingerprint, source = _amazon_cnn(args, len(content))
    else:
        extract, fingerprint, source = _network(args, content)
    start = time.perf_counter()
    cached = None if args.no_cache else cache.load("image", encoder_key, fingerprint)
    features, imputed = cached if cached is not None else extract()
    if cached is None and not args.no_cache:
        cache.store("image", encoder_key, fingerprint, features, imputed)
    seconds = time.perf_counter() - start
    info = {
        "encoder": args.encoder,
        "dim": int(features.shape[1]),
        "image_size": args.image_size,
        "fingerprint": fingerprint,
        "source": source,
        "imputed_items": [int(i) for i in imputed],
        "imputation": "mean of the other items",
    }
    path = write_features(args.data, "image", features, info)
    print(
        f"{path}: {features.shape[0]} items x {features.shape[1]} ({args.encoder}) in {seconds:.1f} s, "
        f"{len(imputed)} imputed" + (" (cached)" if cached is not None else "")
    )
    return 0


def _network(args: argparse.Namespace, content: pd.DataFrame):
    """(extract(), fingerprint, source) for a torchvision/timm network over the listed images."""
    images = [_image_path(args.data, rel, item) for item, rel in zip(content["itemID"], content["image"])]

    def extract():
        from guider.features.image import encode_images

        return encode_images(
            images,
            model_name=args.encoder,
            device=args.device,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            image_size=args.image_size,
        )

    return extract, image_fingerprint(images), "item_content.csv image"


def _image_path(folder: Path, rel: str, item: int) -> Path | None:
    if not rel:
        return None
    path = folder / rel
    if not path.is_file():
        log.warning("item %d: image %s does not exist; it gets the mean feature", item, path)
        return None
    return path


def _amazon_cnn(args: argparse.Namespace, n_items: int):
    """(extract(), fingerprint, source) for the published Amazon CNN features."""
    path = args.features_file or _recorded_features_file(args.data)
    map_path = args.data / ITEM_MAP_FILE
    if not map_path.exists():
        raise FileNotFoundError(
            f"{map_path}: amazon_cnn needs the item id map (asin, itemID) to find each item's record"
        )
    items = pd.read_csv(map_path, sep="\t", dtype={"asin": str}).sort_values("itemID")
    if items["itemID"].tolist() != list(range(n_items)):
        raise ValueError(f"{map_path}: itemID must cover 0..{n_items - 1} once each")
    asins = items["asin"].tolist()
    return (lambda: read_amazon_cnn(path, asins)), file_fingerprint(path, *asins), str(path)


def _recorded_features_file(folder: Path) -> Path:
    recorded = read_dataset_meta(folder).get("source", {}).get("files", {}).get("image_features", {}).get("path")
    if not recorded or not Path(recorded).exists():
        raise FileNotFoundError(
            f"{folder}: no image_features_<Category>.b recorded in dataset.json (or it moved); "
            "pass --features-file, or download it with `guider data download NAME`"
        )
    return Path(recorded)
