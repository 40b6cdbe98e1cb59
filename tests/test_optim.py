"""guider.engine.optim.adam: the fused kernel follows the Adam update rule (float64 reference loop)."""

import numpy as np
import pytest
import torch

from guider.engine import optim


def reference_adam(x, grads, lr, weight_decay, beta1=0.9, beta2=0.999, eps=1e-8):
    """Kingma & Ba's Adam with L2 weight decay added to the gradient (torch's `Adam`), float64."""
    m, v = np.zeros_like(x), np.zeros_like(x)
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * x
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        x = x - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
    return x


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_matches_the_update_rule(weight_decay):
    rng = np.random.default_rng(0)
    start = rng.normal(size=(50, 8))
    grads = [rng.normal(size=(50, 8)) for _ in range(6)]
    param = torch.nn.Parameter(torch.tensor(start, dtype=torch.float32))
    opt = optim.adam([param], lr=0.01, weight_decay=weight_decay)
    assert opt.defaults["fused"] is True  # the CPU has a fused kernel
    for g in grads:
        param.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
    np.testing.assert_allclose(
        param.detach().double().numpy(), reference_adam(start, grads, 0.01, weight_decay), atol=1e-5
    )


def test_adam_falls_back_where_no_fused_kernel_exists(monkeypatch):
    real = torch.optim.Adam

    def no_fused(params, fused=None, **kw):
        if fused:
            raise RuntimeError("fused=True requires all the params to be floating point Tensors of supported devices")
        return real(params, **kw)

    monkeypatch.setattr(torch.optim, "Adam", no_fused)
    opt = optim.adam([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    assert not opt.defaults.get("fused")
