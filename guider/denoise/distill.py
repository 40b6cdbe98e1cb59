"""Guided knowledge distillation: the student's ranking distribution is pulled towards the
teacher's over a per-user candidate set, by entropic optimal transport (the paper) or KL
(the `kl_kd` ablation).

OT is solved batched over users by POT's Sinkhorn iterations (`ot.batch.solve_batch`,
re-expressed in sinkhorn.py so that its stopping test never reads the device), in the
plain (not log) domain: with eps = 0.05 and costs 1 - cos in [0, 2] the kernel exp(-M/eps)
stays above exp(-40), far from float32 underflow. When the cost bound / eps exceeds
`PLAIN_DOMAIN_LIMIT` (GUIDER's cosine cost: eps < 0.04) the log-domain solver is used.
Before 0.3 a plain solve that came out non-finite was redone in the log domain; that check
read the device every batch and never fired: with M / eps <= 50 and marginals >= MIN_MASS
the scalings stay within exp(+-(50 + log 1 / MIN_MASS)) ~ 1e34, inside float32.

Gradient (to the student distribution only). The entropic OT value
    OT_eps(a, b; M) = min_T <T, M> + eps * sum T log T,  T 1 = a, T^T 1 = b
has gradient d OT / d a = f, the dual potential of the source marginal (envelope
theorem), defined up to an additive constant that a softmax input cancels. POT's own
`grad='envelope'` gives gradients w.r.t. the cost matrix only, not the marginals, so the
solve runs detached and the loss is the surrogate
    value + <f - mean(f), a - a.detach()>,
whose value is the OT value and whose gradient w.r.t. `a` is the centred potential
f = eps * log(u) (u the Sinkhorn scaling of the rows). Teacher scores and costs never
receive gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from guider.denoise.sinkhorn import sinkhorn_batch
from guider.settings import Section, setting

PLAIN_DOMAIN_LIMIT = 50.0  # use the log-domain solver when max(M) / eps exceeds this
COSINE_COST_MAX = 2.0  # 1 - cos lies in [0, 2]
MIN_MASS = 1e-12  # marginals are clamped to this so the potential log(u) stays finite
KD_LOSSES = ("ot", "kl")
KD_BALANCES = ("fixed", "mgda")


@dataclass(frozen=True)
class KDConfig(Section):
    """The `kd` section (guider-method.md sec. 3; our choices where it is silent: docs/method.md)."""

    loss: str = setting("ot", choices=KD_LOSSES)  # paper: optimal transport (kl: the kl_kd ablation)
    weight: float = setting(0.1, ge=0)  # paper: L = L_backbone + weight x L_KD (0: no KD)
    temperature: float = setting(1.0, gt=0)  # paper: softmax temperature t
    eps: float = setting(0.05, gt=0)  # paper: entropic regularisation of the OT
    candidates: int = setting(50, ge=2)  # ours: K candidates per user (the paper's 100 halved for cost)
    teacher_top: int = setting(24, ge=0)  # ours: of which the teacher's top items
    users: int = setting(128, ge=1)  # ours: distinct batch users distilled per step (cost control)
    iters: int = setting(30, ge=1)  # ours: Sinkhorn iterations at most
    tol: float = setting(1e-5, ge=0)  # ours: Sinkhorn stopping tolerance
    balance: str = setting("fixed", choices=KD_BALANCES)  # paper: fixed weight or MGDA min-norm weights
    refresh_teacher: bool = setting(True)  # paper: KD against the teacher updated on this batch


def cosine_cost(item_emb: torch.Tensor) -> torch.Tensor:
    """[U, K, K] cost 1 - cos(e_a, e_b) between the candidate items of each user (in [0, 2])."""
    unit = F.normalize(item_emb, dim=-1)  # [U, K, d]
    return (1.0 - unit @ unit.transpose(1, 2)).clamp_(0.0, 2.0)  # [U, K, K]


def _clamped_marginal(p: torch.Tensor) -> torch.Tensor:
    p = p.detach().clamp_min(MIN_MASS)
    return p / p.sum(-1, keepdim=True)


def _solve(cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float, max_iter: int, tol: float, method: str):
    """Batched Sinkhorn (POT's iterations and stopping rule, no host reads: sinkhorn.py);
    returns (values [U], source potential [U, K])."""
    value, scaling = sinkhorn_batch(cost, a, b, eps, max_iter, tol, log_domain=method == "log_sinkhorn")
    log_u = torch.log(scaling) if method == "sinkhorn" else scaling  # [U, K]
    return value, eps * log_u


def entropic_ot(
    p_student: torch.Tensor,
    p_teacher: torch.Tensor,
    cost: torch.Tensor,
    eps: float = 0.05,
    max_iter: int = 30,
    tol: float = 1e-5,
    cost_max: float | None = None,
) -> torch.Tensor:
    """[U] entropic OT value between p_student [U, K] and p_teacher [U, K] under cost [U, K, K].

    Differentiable w.r.t. `p_student` only (envelope gradient, see the module docstring).
    `cost_max`: a known upper bound of the cost (2 for 1 - cos), which picks the domain
    without reading the cost back from the device; None reads max(cost).
    """
    if eps <= 0:
        raise ValueError(f"kd.eps must be > 0, got {eps}")
    a, b, cost = _clamped_marginal(p_student), _clamped_marginal(p_teacher), cost.detach()
    bound = float(cost.max()) if cost_max is None else cost_max
    method = "sinkhorn" if bound / eps <= PLAIN_DOMAIN_LIMIT else "log_sinkhorn"
    value, potential = _solve(cost, a, b, eps, max_iter, tol, method)
    potential = potential - potential.mean(-1, keepdim=True)  # [U, K] gauge: centred
    return value.detach() + (potential * (p_student - p_student.detach())).sum(-1)  # [U]


def ot_distillation(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    teacher_item_emb: torch.Tensor,
    temperature: float = 1.0,
    eps: float = 0.05,
    max_iter: int = 30,
    tol: float = 1e-5,
) -> torch.Tensor:
    """L_KD = mean_u OT_eps(softmax(y^S/t), softmax(y^T/t); 1 - cos of teacher item embeddings).

    student_logits, teacher_logits: [U, K] scores of each user's candidates;
    teacher_item_emb: [U, K, d] the teacher's embeddings of those candidates.
    """
    p_student = torch.softmax(student_logits / temperature, dim=-1)  # [U, K]
    p_teacher = torch.softmax(teacher_logits.detach() / temperature, dim=-1)  # [U, K]
    cost = cosine_cost(teacher_item_emb.detach())  # [U, K, K]
    return entropic_ot(p_student, p_teacher, cost, eps, max_iter, tol, cost_max=COSINE_COST_MAX).mean()


def kl_distillation(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """L_KD = mean_u KL(p_T || p_S) over the same candidates (the `kl_kd` ablation)."""
    log_p_student = torch.log_softmax(student_logits / temperature, dim=-1)  # [U, K]
    log_p_teacher = torch.log_softmax(teacher_logits.detach() / temperature, dim=-1)  # [U, K]
    return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")


def build_candidates(
    teacher_scores: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    n_candidates: int,
    n_top: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """[U, K] candidate items per user: the batch positive and negative, the teacher's top
    `n_top` items (training positives not masked; pos/neg excluded so they are not repeated),
    then uniform random items up to K. Random fill may rarely repeat an item (K << n_items).

    teacher_scores: [U, n_items] detached teacher scores; pos, neg: [U].
    """
    n_users, n_items = teacher_scores.shape
    n_top = min(n_top, n_candidates - 2, n_items - 2)
    if n_candidates < 2 or n_top < 0:
        raise ValueError(f"kd.candidates must be >= 2 (got {n_candidates}) and kd.teacher_top >= 0")
    top = _top_excluding(teacher_scores.detach(), pos, neg, n_top)  # [U, n_top]
    n_random = n_candidates - 2 - n_top
    rand = torch.randint(n_items, (n_users, n_random), generator=generator, device="cpu").to(teacher_scores.device)
    return torch.cat([pos[:, None], neg[:, None], top, rand], dim=1)  # [U, K]


def _top_excluding(scores: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, n_top: int) -> torch.Tensor:
    """[U, n_top] each row's highest-scoring items other than its pos and neg, best first.

    The top n_top + 2 of the unmasked scores hold them (pos and neg take at most two places);
    a stable sort moves pos/neg hits behind the rest. The same items as masking pos and neg
    to -inf in a copy of the [U, n_items] scores and taking the top n_top (tests/test_ot.py),
    without that copy."""
    top = scores.topk(n_top + 2, dim=1).indices  # [U, n_top + 2]
    excluded = (top == pos[:, None]) | (top == neg[:, None])
    order = torch.sort(excluded.to(torch.uint8), dim=1, stable=True).indices[:, :n_top]
    return top.gather(1, order)
