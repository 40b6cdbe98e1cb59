"""guider/methods/sinkhorn.py against POT's ot.batch.solve_batch (the reference it re-expresses)."""

import ot
import pytest
import torch

from guider.methods.distill import cosine_cost
from guider.methods.sinkhorn import sinkhorn_batch


def problem(seed: int, n_users: int = 16, k: int = 12, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    a = torch.softmax(torch.randn(n_users, k, generator=gen, dtype=dtype) * 2, -1)
    b = torch.softmax(torch.randn(n_users, k, generator=gen, dtype=dtype) * 2, -1)
    cost = cosine_cost(torch.randn(n_users, k, 6, generator=gen, dtype=dtype))
    return cost, a, b


def pot(cost, a, b, reg, max_iter, tol, method):
    res = ot.solve_batch(cost, reg=reg, a=a, b=b, max_iter=max_iter, tol=tol, method=method, grad="detach")
    return res.value, res.potentials[0], res.log["n_iter"]


@pytest.mark.parametrize("log_domain", [False, True])
@pytest.mark.parametrize(
    ("reg", "tol", "max_iter", "pot_stops_at"),
    [(0.05, 1e-5, 30, 29), (0.05, 0.0, 30, 29), (0.05, 1e-3, 200, None), (0.05, 1e-12, 7, 6), (0.05, 0.1, 30, 20),
     (0.2, 0.01, 30, 10), (0.2, 1e-3, 30, 20)],
)  # fmt: skip
def test_same_scalings_and_values_as_pot(log_domain, reg, tol, max_iter, pot_stops_at):
    """Element for element POT's result, where POT stops early (after iteration 10 or 20:
    the frozen scalings are exercised) and where it runs every iteration."""
    cost, a, b = problem(seed=3)
    method = "log_sinkhorn" if log_domain else "sinkhorn"
    value_ref, scaling_ref, n_iter = pot(cost, a, b, reg, max_iter, tol, method)
    if pot_stops_at is not None:
        assert n_iter == pot_stops_at
    value, scaling = sinkhorn_batch(cost, a, b, reg, max_iter, tol, log_domain=log_domain, pot_order=True)
    torch.testing.assert_close(scaling, scaling_ref, rtol=0, atol=0)
    torch.testing.assert_close(value, value_ref, rtol=1e-6, atol=1e-7)
    fast_value, fast_scaling = sinkhorn_batch(cost, a, b, reg, max_iter, tol, log_domain=log_domain, pot_order=False)
    if log_domain:  # the log domain has one order only: POT's
        torch.testing.assert_close(fast_scaling, scaling_ref, rtol=0, atol=0)
    else:  # batched mat-vec order: stops at the same check, agrees to float32 rounding, which
        # accumulates over the iterations (measured 1.29e-5 after 200 on one machine)
        torch.testing.assert_close(fast_scaling, scaling_ref, rtol=max(1e-5, 1e-7 * max_iter), atol=0)
        torch.testing.assert_close(fast_value, value_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_matvec_order_as_close_to_float64_as_pot_order(seed):
    """At GUIDER's shapes and defaults (50 candidates, eps 0.05, 30 iterations, float32) the
    default order's value and scalings are within 1e-6 / 1e-5 of the float64 solve of the same
    iterations, no farther from it than POT's order (up to float32 rounding)."""
    cost, a, b = problem(seed, n_users=64, k=50)
    exact_value, exact_scaling = sinkhorn_batch(cost.double(), a.double(), b.double(), 0.05, 30, 0.0, False)
    for pot_order in (True, False):
        value, scaling = sinkhorn_batch(cost, a, b, 0.05, 30, 1e-5, False, pot_order=pot_order)
        torch.testing.assert_close(value.double(), exact_value, rtol=0, atol=1e-6)
        torch.testing.assert_close(scaling.double(), exact_scaling, rtol=1e-5, atol=0)


def test_an_early_stop_is_not_the_full_run():
    """The tolerance matters: stopped at iteration 10 the scalings differ from 30 iterations."""
    cost, a, b = problem(seed=3)
    for pot_order in (True, False):
        early = sinkhorn_batch(cost, a, b, 0.2, 30, 0.01, log_domain=False, pot_order=pot_order)[1]
        full = sinkhorn_batch(cost, a, b, 0.2, 30, 0.0, log_domain=False, pot_order=pot_order)[1]
        assert not torch.equal(early, full)


def test_float64_converged_value_matches_pot_per_user_solver():
    cost, a, b = problem(seed=9, n_users=4, dtype=torch.float64)
    value, _ = sinkhorn_batch(cost, a, b, 0.1, 5000, 1e-13, log_domain=False)
    for u in range(4):
        reference = ot.solve(cost[u], a=a[u], b=b[u], reg=0.1, reg_type="entropy", max_iter=20000, tol=1e-13).value
        assert float(value[u]) == pytest.approx(float(reference), abs=1e-9)


def near_identity_problem(seed: int, n_users: int = 64, k: int = 50):
    """GUIDER's regime mid-training (captured from a BPR run on the baby preset): nearly
    uniform marginals and 1 - cos costs of ~0.93 off the diagonal, 0 on it, so the kernel
    exp(-M / 0.05) is nearly the identity and the scalings grow to e^(+-15): the case where
    the value from the scalings cancels most (sum r log f and sum c log g ~ +-15 each)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.softmax(0.3 * torch.randn(n_users, k, generator=gen), -1)
    b = torch.softmax(0.3 * torch.randn(n_users, k, generator=gen), -1)
    off = 0.93 + 0.04 * torch.randn(n_users, k, k, generator=gen)
    cost = ((off + off.transpose(1, 2)) / 2).clamp(0, 2)
    cost.diagonal(dim1=1, dim2=2).zero_()
    return cost, a, b


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("pot_order", [True, False])
def test_value_from_scalings_equals_the_float64_plan_value(seed, pot_order):
    """The value from the scalings equals <T, M> + eps sum T log T of the plan those very
    scalings define, evaluated entry by entry in float64 (the independent reference), in the
    near-identity regime, at the default 30 iterations and run to 300."""
    cost, a, b = near_identity_problem(seed)
    for iters in (30, 300):
        value, f = sinkhorn_batch(cost, a, b, 0.05, iters, 0.0, log_domain=False, pot_order=pot_order)
        kernel = torch.exp(-cost.double() / 0.05)
        g = b.double() / (kernel * f.double()[:, :, None]).sum(dim=1)  # the last half-step, from f
        plan = f.double()[:, :, None] * kernel * g[:, None, :]
        reference = (plan * cost.double()).sum(dim=(1, 2)) + 0.05 * (plan * torch.log(plan)).sum(dim=(1, 2))
        assert float(f.double().log().abs().max()) > 5  # the cancelling regime is exercised
        torch.testing.assert_close(value.double(), reference, rtol=1e-6, atol=1e-7)
