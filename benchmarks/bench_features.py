"""Feature-extraction throughput (items/s) for text and images on this machine.

Text: all-MiniLM-L6-v2 over product sentences of Amazon's typical length (title, brand,
category path and a description: ~90 words). Images: JPEG files of 300x300 pixels (the
size of Amazon's imUrl images) decoded from disk and encoded by each image model. The
first batch is a warm-up (model load, allocator) and is not counted. Also reports the
Amazon CNN `.b` parser, which only reads the wanted records.

    python benchmarks/bench_features.py [--texts 512] [--images 128] [--device cpu]
        [--image-models efficientnet_lite0 resnet50 vgg16] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

WORDS = (
    "soft cotton baby blanket stroller safe organic bottle warm travel seat toddler cute pack gift "
    "washable bpa free durable portable lightweight set pink blue grey infant toy sleep"
).split()


def make_sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(60, 120)))) for _ in range(n)]


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        base = rng.integers(0, 255, size=(30, 30, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((300, 300), Image.BILINEAR)  # smooth, photo-like
        path = folder / f"{i}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def rate(function, items: list, batch_size: int) -> float:
    """items/s of `function(items)`, after a warm-up call on one batch."""
    function(items[:batch_size])
    start = time.perf_counter()
    function(items)
    return len(items) / (time.perf_counter() - start)


def bench_text(n: int, device: str | None, batch_size: int) -> float:
    from guider.features.text import encode_texts

    sentences = make_sentences(n)
    return rate(
        lambda xs: encode_texts(xs, device=device, batch_size=batch_size, progress=False), sentences, batch_size
    )


def bench_images(paths: list[Path], model: str, device: str | None, batch_size: int) -> float:
    from guider.features.image import encode_images

    return rate(
        lambda xs: encode_images(xs, model_name=model, device=device, batch_size=batch_size, progress=False),
        paths,
        batch_size,
    )


def bench_amazon_cnn(folder: Path, n_records: int, n_wanted: int) -> float:
    from guider.features.amazon_cnn import read_amazon_cnn, record_dtype

    records = np.zeros(n_records, dtype=record_dtype())
    records["asin"] = [f"B{i:09d}".encode() for i in range(n_records)]
    records["feature"] = np.random.default_rng(0).random((n_records, 4096), dtype=np.float32)
    path = folder / "image_features_Bench.b"
    records.tofile(path)
    wanted = [f"B{i:09d}" for i in range(0, n_records, max(1, n_records // n_wanted))][:n_wanted]
    start = time.perf_counter()
    read_amazon_cnn(path, wanted)
    return len(wanted) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--image-models", nargs="+", default=["efficientnet_lite0", "resnet50", "vgg16"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device {device}, torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}")
    print(f"{'extractor':<38} {'items':>6} {'items/s':>10}")
    label = "text all-MiniLM-L6-v2 (~90 words)"
    try:
        print(f"{label:<38} {args.texts:>6} {bench_text(args.texts, device, 64):>10.1f}")
    except RuntimeError as err:  # e.g. the bundled model package is not installed
        print(f"{label:<38} {'-':>6} {'n/a':>10}  ({str(err)[:90]}...)")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.images)
        for model in args.image_models:
            label = f"image {model} (300px JPEG)"
            try:
                print(f"{label:<38} {args.images:>6} {bench_images(paths, model, device, 32):>10.1f}")
            except RuntimeError as err:  # e.g. ImageNet weights not in torchvision's cache, offline
                print(f"{label:<38} {'-':>6} {'n/a':>10}  ({str(err)[:90]}...)")
        label = "amazon_cnn .b (2,000 of 20,000)"
        print(f"{label:<38} {2000:>6} {bench_amazon_cnn(Path(tmp), 20_000, 2_000):>10.1f}")


if __name__ == "__main__":
    main()
