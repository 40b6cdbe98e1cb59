"""Backbone registry and the single place defaults are written down."""

import inspect

import pytest
import torch
from conftest import make_dataset

from guider.models import available, build_model, default_hparams, get_class
from guider.models.base import ModelInputs
from guider.train import model_inputs


def test_all_five_backbones_and_pop_registered():
    assert {"pop", "bpr", "lightgcn", "vbpr", "freedom", "bm3"} <= set(available())


@pytest.mark.parametrize("name", available())
def test_constructor_defaults_agree_with_defaults_yaml(name):
    """defaults.yaml is the source of truth; a constructor default that drifts from it is a bug."""
    params = inspect.signature(get_class(name).__init__).parameters
    ctor = {k: p.default for k, p in params.items() if k not in ("self", "inputs")}
    yaml_defaults = default_hparams(name)
    assert set(ctor) == set(yaml_defaults)
    for key, value in yaml_defaults.items():
        assert ctor[key] == pytest.approx(value), f"{name}.{key}: constructor {ctor[key]} vs defaults.yaml {value}"


def test_unknown_names_and_hparams_are_clear_errors():
    inputs = model_inputs(make_dataset(), torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown backbone 'lightgcm'; available: .*lightgcn"):
        build_model("lightgcm", inputs)
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['layers'\] for 'lightgcn'"):
        build_model("lightgcn", inputs, {"layers": 2})
    assert isinstance(inputs, ModelInputs)
