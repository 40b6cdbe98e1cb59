"""Batched entropic OT solved to convergence by damped Newton steps on the semi-dual: GUIDER's
default OT solver (`kd.solver: newton`; specification, Method §3).

Per user: OT_eps(a, b; M) = min_T <T, M> + eps sum T log T subject to T 1 = a, T^T 1 = b.

Why not plain Sinkhorn: at GUIDER's operating point the teacher's candidate embeddings are
nearly orthogonal (costs 1 - cos ~0.85-0.97 off the diagonal), so the Gibbs kernel
exp(-M / eps) is almost the identity, and early in training p_S ~ p_T. Each Sinkhorn
iteration then moves the potential by only eps |log(p_S / p_T)|: POT's stopping rule needs
1,000-6,000 iterations (100-1,100 ms per [128, 50, 50] solve on 2 CPU threads), and a fixed
budget of 30 under-solves it (gradient norm 0.05-0.98 of the converged one). Newton's method
converges in 5-10 steps from the same start (benchmarks/bench_sinkhorn.py, docs/method.md).

The semi-dual. For a source potential f [K], the target potential g is taken in closed form,
so the column marginals are exact:
    u = exp(f / eps - c)        c = max(f) / eps, a per-user shift keeping u <= 1
    s = u K,  K = exp(-M / eps) (computed once)
    T = diag(u) K diag(b / s),  g = eps (log b - log s - c)
    D(f) = <f, a> + <g, b>      concave, unchanged by f -> f + const, max D = OT_eps
    grad D = a - r, r = T 1 (the row marginal);  hess D = -(1 / eps) L,
    L = diag(r) - W, W = T diag(1 / b) T^T (W 1 = r): the Laplacian of the weighted graph W.
L is built from W's off-diagonal entries only (L_ii = sum over k != i of W_ik), never as
diag(r) - diag(W): the plan is nearly diagonal, L's entries (~1e-6..1e-4) would cancel against
r (~1 / K), and float32 would lose them all. W = X X^T with X = T diag(b)^-1/2.

The iteration (per user, batched):
  0. start: `warm_start` plain Sinkhorn iterations (POT's order) from v = 1, f = eps log u;
  1. Newton direction d = eps (L + tau 11^T / K + mu I)^-1 (a - r), by a batched Cholesky
     factorisation (tau, the mean off-diagonal degree, fixes the gauge; mu keeps it positive
     definite if underflow disconnects the graph); d is centred;
  2. the step is capped at `cap` x eps in the max norm (far from the optimum Newton's quadratic
     model of the exponential landscape overshoots by orders of magnitude);
  3. a line search without host reads: D at f + t d for t = 1, 1/2, ..., 2^-(n_ls - 1) in one
     batched product; each user takes its best t when that does not lower D (within a rounding
     slack the full step is preferred: near the optimum D's rise falls below the working
     precision while the marginal error still falls quadratically).

Stopping rule (per user): converged when
    (||T 1 - a||_1 <= tol and ||a (d - <a, d>)||_2 <= rtol ||a (f - <a, f>)||_2 + gtol)
    or ||T 1 - a||_1 <= floor.
a (f - <a, f>) is the gradient GUIDER back-propagates to the student's logits, and the Newton
step estimates f* - f, so the second test bounds that gradient's relative error by about rtol;
an absolute marginal tolerance alone does not (the gradient's sensitivity to the marginal
error grows as a -> b). `floor` is the working precision's limit. Converged users are frozen.

Float32's floor: a user whose row marginal reaches float32's resolution before the gradient
test passes (its student distribution equal to the teacher's: the gradient then hangs on
errors below float32's resolution) is finished by a few float64 steps from its float32
potential; usually nobody needs it.

Host reads: one per block of `check_every` iterations ("are all users done?"), which may end the
loop early, and one after the loop (does anyone need float64?); none per iteration.
`check_every` 0 reads nothing and runs exactly `max_iter` iterations (and never polishes). On
the CPU the users that converged are also dropped from the working set at each check (fewer
LAPACK calls); on a GPU shapes stay fixed.

Accuracy (benchmarks/bench_sinkhorn.py, tests/test_ot_newton.py): against float64 solves run to
convergence (POT's `ot.solve_batch`), the gradient w.r.t. the student's logits has per-user
cosine >= 0.9999 and norm ratio 1.000 +- 1e-3 on captured GUIDER batches and random problems,
in float32; its float32 limit is ~0.5-1 % of the gradient where a = b exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LAPLACIAN_JITTER = {torch.float32: 1e-7, torch.float64: 1e-12}  # mu
MARGINAL_FLOOR = {torch.float32: 2e-7, torch.float64: 1e-12}  # converged whatever the step


@dataclass(frozen=True)
class NewtonSettings:
    tol: float = 1e-5  # L1 error of the row marginal
    rtol: float = 1e-3  # relative change of the student's gradient the last Newton step would make
    gtol: float = 1e-9  # absolute version of rtol (users whose gradient is ~0)
    max_iter: int = 30  # Newton iterations at most
    check_every: int = 3  # one host read per this many iterations (0: none, exactly max_iter)
    warm_start: int = 40  # plain Sinkhorn iterations before the first Newton step
    cap: float = 5.0  # max-norm step cap, in units of eps
    n_ls: int = 8  # step sizes tried by the line search


@dataclass
class NewtonResult:
    value: torch.Tensor  # [U] D(f) = OT_eps (up to the row marginal's error)
    potential: torch.Tensor  # [U, K] centred source potential f: d OT_eps / d a on the simplex
    iters: torch.Tensor  # [U] int64 Newton iterations per user (to convergence, else all that ran)
    converged: torch.Tensor  # [U] bool
    marginal_error: torch.Tensor  # [U] ||T 1 - a||_1


class _Problem:
    """The fixed inputs of a batch of semi-dual problems (a subset of users after compaction)."""

    def __init__(self, kernel: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float):
        self.kernel, self.a, self.b, self.eps = kernel, a, b, eps
        self.log_b, self.sqrt_b = torch.log(b), torch.sqrt(b)

    def subset(self, keep: torch.Tensor) -> _Problem:
        return _Problem(self.kernel[keep], self.a[keep], self.b[keep], self.eps)

    def scalings(self, f: torch.Tensor):
        """f [U, n, K] -> (c [U, n, 1], u [U, n, K], s [U, n, K]): u = exp(f / eps - c), s = u K."""
        c = f.amax(-1, keepdim=True) / self.eps
        u = torch.exp(f / self.eps - c)
        return c, u, torch.bmm(u, self.kernel)

    def values(self, f: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """[U, n] D(f) = <f, a> + <g, b> for f [U, n, K]."""
        g = self.eps * (self.log_b[:, None, :] - torch.log(s) - c)
        return (f * self.a[:, None, :]).sum(-1) + (g * self.b[:, None, :]).sum(-1)


@dataclass
class _State:
    f: torch.Tensor  # [U, K]
    u: torch.Tensor  # [U, K]
    s: torch.Tensor  # [U, K]
    value: torch.Tensor  # [U]
    iters: torch.Tensor  # [U]
    done: torch.Tensor  # [U]
    error: torch.Tensor  # [U]
    floored: torch.Tensor  # [U] stopped at the precision floor without passing the gradient test

    def subset(self, keep: torch.Tensor) -> _State:
        return _State(*(getattr(self, name)[keep] for name in self.__dataclass_fields__))


def solve_semi_dual(
    cost: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    eps: float,
    settings: NewtonSettings = NewtonSettings(),
    start: torch.Tensor | None = None,
) -> NewtonResult:
    """Entropic OT of each user's (a [U, K], b [U, K]) under cost [U, K, K], by damped Newton
    steps on the semi-dual (module docstring); works in the inputs' dtype, all detached.
    `start`: a source potential [U, K] to start from instead of the Sinkhorn warm start."""
    cost, a, b = cost.detach(), a.detach(), b.detach()
    dtype = cost.dtype
    a = a / a.sum(-1, keepdim=True)  # normalised in the working precision (else a floor on the error)
    b = b / b.sum(-1, keepdim=True)
    problem = _Problem(torch.exp(cost / -eps), a, b, eps)
    state = _start(problem, settings.warm_start, None if start is None else start.detach().to(dtype))
    compact = cost.device.type == "cpu"
    out = _State(*(getattr(state, name).clone() for name in _State.__dataclass_fields__))
    active = torch.arange(len(a), device=cost.device)
    floor, jitter = MARGINAL_FLOOR.get(dtype, 1e-12), LAPLACIAN_JITTER.get(dtype, 1e-12)
    for it in range(settings.max_iter + 1):
        step = _newton_step(problem, state, jitter)
        _update_convergence(state, problem.a, step, settings, floor)
        if it == settings.max_iter:
            break
        if settings.check_every and it % settings.check_every == 0:
            left = ~state.done
            n_left = int(left.sum())  # the block's one host read
            if n_left == 0:
                break
            if compact and n_left < len(left):
                _write_back(out, state, active)
                keep = left.nonzero()[:, 0]
                active, problem, state, step = active[keep], problem.subset(keep), state.subset(keep), step[keep]
        _line_search(problem, state, step, settings)
    _write_back(out, state, active)
    if dtype != torch.float64 and settings.check_every:
        _polish_in_float64(cost, a, b, eps, out)
    potential = out.f - out.f.mean(-1, keepdim=True)
    converged = out.done & ~out.floored
    return NewtonResult(out.value, potential, out.iters, converged, out.error)


def _polish_in_float64(cost, a, b, eps: float, out: _State) -> None:
    """Finish in float64 the users that reached float32's marginal floor without passing the
    gradient test (a student distribution equal to the teacher's: the gradient then hangs on
    marginal errors below float32's resolution). One host read; usually nobody needs it."""
    if int(out.floored.sum()) == 0:
        return
    users = out.floored.nonzero()[:, 0]
    polished = solve_semi_dual(
        cost[users].double(), a[users].double(), b[users].double(), eps,
        NewtonSettings(max_iter=10, warm_start=0), start=out.f[users].double(),
    )  # fmt: skip
    out.f[users] = polished.potential.to(out.f.dtype)
    out.value[users] = polished.value.to(out.value.dtype)
    out.iters[users] += polished.iters
    out.error[users] = polished.marginal_error.to(out.error.dtype)
    out.floored[users] = ~polished.converged


def _start(problem: _Problem, warm_start: int, start: torch.Tensor | None) -> _State:
    """The potential after `warm_start` Sinkhorn iterations (f = eps log u, centred), or `start`."""
    a = problem.a
    f = torch.zeros_like(a) if start is None else start
    if warm_start and start is None:
        kernel, v = problem.kernel, torch.ones_like(problem.b)
        for _ in range(warm_start):
            u = a / (kernel * v[:, None, :]).sum(2)
            v = problem.b / (kernel * u[:, :, None]).sum(1)
        f = problem.eps * torch.log(u)
        f = torch.where(torch.isfinite(f), f, torch.zeros_like(f))
    f = f - f.mean(-1, keepdim=True)
    c, u, s = problem.scalings(f[:, None, :])
    value = problem.values(f[:, None, :], c, s)[:, 0]
    zeros = torch.zeros(len(a), device=a.device)
    return _State(f, u[:, 0], s[:, 0], value, zeros.long(), zeros.bool(), zeros.to(a.dtype), zeros.bool())


def _newton_step(problem: _Problem, state: _State, jitter: float) -> torch.Tensor:
    """[U, K] the centred Newton direction; updates state.error (the row marginal's L1 error)."""
    x = (state.u[:, :, None] * problem.kernel) * (problem.sqrt_b / state.s)[:, None, :]  # [U, K, K] T diag(b)^-1/2
    r = torch.bmm(x, problem.sqrt_b[:, :, None])[:, :, 0]  # [U, K] T 1
    state.error = (r - problem.a).abs().sum(-1)
    lap = torch.bmm(x, x.transpose(1, 2))  # [U, K, K] W
    lap.diagonal(dim1=1, dim2=2).zero_()
    degree = lap.sum(-1)  # [U, K] off-diagonal degrees
    tau = degree.mean(-1, keepdim=True) / lap.shape[-1]  # [U, 1] gauge weight on L's scale
    lap.neg_().add_(tau[:, :, None])
    lap.diagonal(dim1=1, dim2=2).copy_(degree + tau + jitter)
    factor, _ = torch.linalg.cholesky_ex(lap)
    rhs = (problem.eps * (problem.a - r))[:, :, None]
    half = torch.linalg.solve_triangular(factor, rhs, upper=False)
    step = torch.linalg.solve_triangular(factor.mT, half, upper=True)[:, :, 0]
    return step - step.mean(-1, keepdim=True)


def _update_convergence(state: _State, a: torch.Tensor, step: torch.Tensor, settings: NewtonSettings, floor) -> None:
    """Mark the users whose marginal and student gradient have converged (module docstring)."""
    grad_step = (a * (step - (a * step).sum(-1, keepdim=True))).norm(dim=-1)
    grad = (a * (state.f - (a * state.f).sum(-1, keepdim=True))).norm(dim=-1)
    converged = (state.error <= settings.tol) & (grad_step <= settings.rtol * grad + settings.gtol)
    floored = (state.error <= floor) & ~converged & ~state.done
    state.floored = state.floored | floored
    state.done = state.done | converged | floored


def _line_search(problem: _Problem, state: _State, step: torch.Tensor, settings: NewtonSettings) -> None:
    """Move each unconverged user to the best of the capped step's halvings (no host read)."""
    eps, dtype = problem.eps, step.dtype
    largest = step.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    step = step * torch.clamp(settings.cap * eps / largest, max=1.0)
    sizes = 0.5 ** torch.arange(settings.n_ls, device=step.device, dtype=dtype)  # [n_ls], sizes[0] = 1
    candidates = state.f[:, None, :] + sizes[None, :, None] * step[:, None, :]  # [U, n_ls, K]
    c, u, s = problem.scalings(candidates)
    values = problem.values(candidates, c, s)  # [U, n_ls]
    slack = 500 * torch.finfo(dtype).eps * state.value.abs().clamp_min(1e-3)  # [U]
    full_step = torch.zeros(settings.n_ls, device=step.device, dtype=dtype)
    full_step[0] = 1.0
    values = torch.where(torch.isfinite(values), values, torch.full_like(values, -torch.inf))
    values = values + full_step * slack[:, None]
    best = values.argmax(-1)  # [U]
    best_value = values.gather(1, best[:, None])[:, 0]
    move = (best_value >= state.value - slack) & ~state.done
    pick = best[:, None, None].expand(-1, 1, step.shape[-1])
    state.f = torch.where(move[:, None], candidates.gather(1, pick)[:, 0], state.f)
    state.u = torch.where(move[:, None], u.gather(1, pick)[:, 0], state.u)
    state.s = torch.where(move[:, None], s.gather(1, pick)[:, 0], state.s)
    state.value = torch.where(move, best_value - full_step[best] * slack, state.value)
    state.iters = state.iters + (~state.done).long()


def _write_back(out: _State, state: _State, active: torch.Tensor) -> None:
    """Copy the working set's results into the full-size result at their users' rows."""
    for name in out.__dataclass_fields__:
        getattr(out, name)[active] = getattr(state, name)
