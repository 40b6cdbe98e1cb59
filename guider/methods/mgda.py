"""Two-task min-norm loss weighting (MGDA, Sener & Koltun 2018) for `kd.balance: mgda`.

For task gradients g1, g2 the min-norm point of their convex hull is
    gamma g1 + (1 - gamma) g2,  gamma = clip((g2 - g1).g2 / |g1 - g2|^2, 0, 1).
The solver used by the authors' released code (Sener & Koltun's `MinNormSolver`) returns
0.999 / 0.001 instead of 1 / 0 at the ends of the segment; `released_bounds=True` keeps that.
"""

from __future__ import annotations

from typing import Sequence

import torch


def flat_gradient(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """[P] gradient of `loss` w.r.t. `params`, flattened (zeros for parameters it does not reach).

    Uses torch.autograd.grad, so nothing accumulates into `.grad` and the graph is retained.
    """
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])


def min_norm_two(g1: torch.Tensor, g2: torch.Tensor, released_bounds: bool = False) -> torch.Tensor:
    """Weight gamma of the first task in the min-norm convex combination of g1 and g2: a
    0-dim float64 tensor on their device (no host read; the same float64 arithmetic as on
    Python floats of the three dot products)."""
    d11, d12, d22 = torch.stack([g1 @ g1, g1 @ g2, g2 @ g2]).double()
    first, second = (0.999, 0.001) if released_bounds else (1.0, 0.0)
    inside = (d22 - d12) / (d11 + d22 - 2.0 * d12)
    gamma = torch.where(d12 >= d22, torch.full_like(inside, second), inside)  # g2 is the min-norm point
    return torch.where(d12 >= d11, torch.full_like(inside, first), gamma)  # g1 is (checked first, as before)
