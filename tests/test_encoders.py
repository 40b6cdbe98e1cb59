"""Offline text and image encoders: bundled weights, ImageNet sanity, mean imputation."""

from types import SimpleNamespace
from urllib.error import URLError

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image

from guider.features import encode_images, encode_texts
from guider.features import image as image_mod
from guider.features.text import bundled_minilm_path, load_text_model

GRACE_HOPPER = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)  # Grace Hopper in US Navy uniform
PLAUSIBLE = {"military uniform", "suit, suit of clothes", "bow tie, bow-tie, bowtie", "Windsor tie"}


# --- text -----------------------------------------------------------------------------------


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_text_shapes_and_semantics():
    emb = encode_texts(
        ["a red cotton summer dress", "a crimson dress made of cotton", "stainless steel kitchen knife"], progress=False
    )
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # the model normalises
    assert cosine(emb[0], emb[1]) > cosine(emb[0], emb[2]) + 0.2


def test_text_missing_entries_and_empty_list():
    emb = encode_texts(["shoe", None, float("nan"), ""], progress=False)
    np.testing.assert_allclose(emb[1], emb[3], atol=1e-6)
    np.testing.assert_allclose(emb[2], emb[3], atol=1e-6)
    assert encode_texts([], progress=False).shape == (0, 384)
    with pytest.raises(ValueError, match="entry 1 is a int"):
        encode_texts(["ok", 3], progress=False)


def test_text_model_is_cached_and_local_folder_loads():
    assert load_text_model("all-MiniLM-L6-v2", "cpu") is load_text_model("all-MiniLM-L6-v2", "cpu")
    by_path = load_text_model(str(bundled_minilm_path()), "cpu")
    text = ["a wooden toy train"]
    np.testing.assert_allclose(by_path.encode(text), encode_texts(text, progress=False), atol=1e-6)


def test_text_unknown_model_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr("guider.features.text.hub_reachable", lambda *a, **k: False)
    with pytest.raises(RuntimeError, match="no-such-model.*local"):
        load_text_model("someone/no-such-model", "cpu")
    with pytest.raises(RuntimeError, match="missing_folder"):
        load_text_model(str(tmp_path / "missing_folder"), "cpu")


# --- image ----------------------------------------------------------------------------------


def imagenet_top5(image: Image.Image) -> list[str]:
    from timm.data import ImageNetInfo

    model = image_mod.load_efficientnet_lite0_classifier()
    encoder = image_mod.load_image_model("efficientnet_lite0", "cpu")
    x = encoder.make_transform(224)(image)[None]  # [1, 3, 224, 224]
    with torch.no_grad():
        top = model(x)[0].topk(5).indices.tolist()
    info = ImageNetInfo()
    return [info.index_to_description(i) for i in top]


def test_efficientnet_lite0_recognises_a_photo():
    top5 = imagenet_top5(Image.open(GRACE_HOPPER).convert("RGB"))
    assert PLAUSIBLE & set(top5), top5


def test_image_features_are_the_classifier_input():
    feats, missing = encode_images([GRACE_HOPPER], progress=False)
    assert feats.shape == (1, 1280) and feats.dtype == np.float32 and missing == []
    model = image_mod.load_efficientnet_lite0_classifier()
    with torch.no_grad():
        logits = model.classifier(torch.from_numpy(feats))  # [1, 1000]
        direct = model(
            image_mod.load_image_model("efficientnet_lite0", "cpu").make_transform(224)(
                Image.open(GRACE_HOPPER).convert("RGB")
            )[None]
        )
    torch.testing.assert_close(logits, direct, atol=1e-3, rtol=1e-4)


def solid(colour, size=48):
    return Image.new("RGB", (size, size), colour)


def test_mean_imputation(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    saved = tmp_path / "blue.png"
    solid((0, 0, 255)).save(saved)
    inputs = [solid((255, 0, 0)), None, saved, tmp_path / "absent.jpg", str(broken)]
    feats, missing = encode_images(inputs, batch_size=2, progress=False, image_size=64)
    assert missing == [1, 3, 4]
    expected = (feats[0].astype(np.float64) + feats[2]) / 2
    for row in missing:
        np.testing.assert_allclose(feats[row], expected, rtol=1e-6, atol=1e-6)
    alone, _ = encode_images([saved], progress=False, image_size=64)
    np.testing.assert_allclose(feats[2], alone[0], rtol=1e-4, atol=1e-5)  # batching does not matter


def test_image_errors(tmp_path):
    with pytest.raises(ValueError, match="none of the 2 images"):
        encode_images([None, tmp_path / "absent.png"], progress=False)
    with pytest.raises(ValueError, match="entry 0 is a int"):
        encode_images([7], progress=False)
    with pytest.raises(ValueError, match="unknown image model"):
        encode_images([solid((0, 0, 0))], model_name="alexnet", progress=False)
    feats, missing = encode_images([], progress=False)
    assert feats.shape == (0, 1280) and missing == []


def test_in_order_mapping_checks_shapes():
    target = {"a.weight": torch.zeros(4, 3), "b.bias": torch.zeros(4)}
    mapped = image_mod.map_state_dict_in_order({"x": torch.ones(4, 3), "y": torch.full((4,), 2.0)}, target)
    assert list(mapped) == ["a.weight", "b.bias"] and mapped["b.bias"][0] == 2.0
    with pytest.raises(ValueError, match="y has shape \\(5,\\).*b.bias has shape \\(4,\\)"):
        image_mod.map_state_dict_in_order({"x": torch.ones(4, 3), "y": torch.ones(5)}, target)
    with pytest.raises(ValueError, match="source has 1 tensors, the target model 2"):
        image_mod.map_state_dict_in_order({"x": torch.ones(4, 3)}, target)


def test_torchvision_weights_come_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    torch.save({"w": torch.arange(3.0)}, tmp_path / "checkpoints" / "fake-1234.pth")
    fake = SimpleNamespace(
        url="https://example.invalid/models/fake-1234.pth",
        get_state_dict=lambda **k: pytest.fail("must not download a cached file"),
    )
    assert torch.equal(image_mod.torchvision_state_dict(fake, "fake")["w"], torch.arange(3.0))


@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_torchvision_offline_without_weights_is_a_clear_error(name, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    image_mod.load_image_model.cache_clear()
    with pytest.raises(RuntimeError, match=f"{name}: ImageNet weights .*place it at {tmp_path}"):
        encode_images([solid((1, 2, 3))], model_name=name, progress=False)


@pytest.mark.parametrize("name, dim", [("resnet50", 2048), ("vgg16", 4096)])
def test_torchvision_feature_dimensions(name, dim, monkeypatch):
    """With random weights in place of ImageNet's, the cut-off layers give the documented sizes."""
    import torchvision

    monkeypatch.setattr(
        image_mod,
        "torchvision_state_dict",
        lambda weights, model_name: getattr(torchvision.models, model_name)().state_dict(),
    )
    image_mod.load_image_model.cache_clear()
    try:
        feats, _ = encode_images([solid((10, 200, 30), 64)], model_name=name, progress=False, image_size=64)
    finally:
        image_mod.load_image_model.cache_clear()
    assert feats.shape == (1, dim)
    assert (feats >= 0).all()  # both are taken after a ReLU
