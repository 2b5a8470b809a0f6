"""Parameter scalings of the paper's Theorem 1, with every hidden constant exposed.

Theorem 1 (Section 5) states that for ``eps >= exp(-o(d / log d))`` there are

    gamma = Theta(1),  m = poly(d),
    lam    = min{ O(log d / d), O(eps / d^{1/2}) },
    alpha  = min{ O(lam / d^{3/2}), O(lam^2), O(eps^2 / d^4) },
    delta1 = O(alpha^{3/2} / m^{1/2}),
    delta0 = Theta(delta1 alpha / log^{1/2} d),

such that Algorithm 2 ends in ``O(log(d / eps))`` epochs with ``|T - T*|_F <= eps`` (w.h.p.).
:func:`theorem1_parameters` evaluates these formulas with explicit constants in front of every
``O(.)`` (all 1 by default, see below). The result is astronomically small for ``delta0`` and
``delta1`` (about 1e-19 and 1e-12 for ``d = 6, eps = 1e-2``, far smaller for smaller ``eps``);
the log-norm coordinates of :mod:`deflation.dynamics` integrate such scales without loss.

The paper gives no value for ``m`` beyond ``poly(d)``; the default ``m = ceil(2 d^2)`` is a
practical choice (enough draws that, at the sizes one simulates, every direction usually has a
column whose initial correlation is well above ``1/d``), not a value from the paper.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx

from . import _validate as check


class Theorem1Parameters(eqx.Module):
    """Parameters of Algorithm 2 chosen by the scalings of Theorem 1 (plain Python numbers).

    Attributes:
        d, eps: the dimension and target accuracy they were computed for.
        lam: regularization coefficient ``lam`` (Section 4's ``lam/2 |W|_F^2``).
        alpha: closeness parameter of Definition 1 (not used by the algorithm, only by its
            diagnostics: ``S_i`` membership needs ``wbar_i^2 >= 1 - alpha^2``).
        delta1: re-initialization threshold.
        delta0: (re-)initialization scale.
        m: number of columns of ``W``.
        gamma: rate of decrease of ``beta`` per epoch.
    """

    d: int
    eps: float
    lam: float
    alpha: float
    delta1: float
    delta0: float
    m: int
    gamma: float

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`deflation.modified_gradient_flow` these fix, with ``d``,
        which that function checks against the target's dimension."""
        return dict(d=self.d, m=self.m, delta0=self.delta0, delta1=self.delta1, lam=self.lam, gamma=self.gamma,
                    eps=self.eps, alpha=self.alpha)


def theorem1_lam(d: int, eps: float, c_lam_d: float = 1.0, c_lam_eps: float = 1.0) -> float:
    """``lam = min(c_lam_d log d / d, c_lam_eps eps / sqrt d)`` (Theorem 1)."""
    return min(c_lam_d * math.log(d) / d, c_lam_eps * eps / math.sqrt(d))


def theorem1_alpha(d: int, eps: float, lam: float, c_alpha_lam: float = 1.0, c_alpha_sq: float = 1.0,
                   c_alpha_eps: float = 1.0) -> float:
    """``alpha = min(c_alpha_lam lam / d^1.5, c_alpha_sq lam^2, c_alpha_eps eps^2 / d^4)`` (Theorem 1)."""
    # products, not powers: a float power that overflows raises OverflowError, a product gives inf
    return min(c_alpha_lam * lam / d**1.5, c_alpha_sq * lam * lam, c_alpha_eps * eps * eps / (float(d) ** 4))


def theorem1_parameters(
    d: int,
    eps: float,
    *,
    m: int | None = None,
    gamma: float = 0.5,
    lam: float | None = None,
    alpha: float | None = None,
    delta1: float | None = None,
    delta0: float | None = None,
    c_lam_d: float = 1.0,
    c_lam_eps: float = 1.0,
    c_alpha_lam: float = 1.0,
    c_alpha_sq: float = 1.0,
    c_alpha_eps: float = 1.0,
    c_delta1: float = 1.0,
    c_delta0: float = 1.0,
    c_m: float = 2.0,
    m_power: float = 2.0,
) -> Theorem1Parameters:
    """Algorithm 2's parameters with the scalings of Theorem 1 and explicit constants.

    Args:
        d: dimension (>= 2; ``log d`` appears in the formulas).
        eps: target accuracy ``|T - T*|_F <= eps`` (> 0). The theorem needs
            ``eps >= exp(-o(d / log d))``; smaller values are accepted (the formulas still apply).
        m: number of columns of ``W``; default ``ceil(c_m d^m_power)`` (``poly(d)`` in the theorem).
        gamma: ``Theta(1)`` rate in (0, 1) of ``beta <- beta (1 - gamma)``; default 0.5.
        c_lam_d, c_lam_eps: ``lam = min(c_lam_d log d / d, c_lam_eps eps / sqrt d)``.
            With ``c_lam_eps = 1`` the equilibrium residual ``lam / 2`` per direction keeps
            ``|T - T*|_F`` about ``sqrt(r) lam / 2 <= eps / 2``, so the stopping rule can be met.
        c_alpha_lam, c_alpha_sq, c_alpha_eps:
            ``alpha = min(c_alpha_lam lam / d^1.5, c_alpha_sq lam^2, c_alpha_eps eps^2 / d^4)``.
        c_delta1: ``delta1 = c_delta1 alpha^1.5 / sqrt m``.
        c_delta0: ``delta0 = c_delta0 delta1 alpha / sqrt(log d)``.
        c_m, m_power: the default ``m`` (a practical choice, not the paper's).
        lam, alpha, delta1, delta0: use this value instead of the formula; the parameters
            derived from it (``alpha`` from ``lam``, ``delta1`` from ``alpha``, ``delta0`` from
            both) then follow the given value.

    Returns:
        a :class:`Theorem1Parameters`; ``.as_kwargs()`` feeds :func:`deflation.modified_gradient_flow`.

    Raises:
        ValueError: on a bad argument, or when ``delta0`` underflows float64.
    """
    d = check.integer("d", d, 2)
    eps = check.positive("eps", eps)
    gamma = check.in_open_interval("gamma", gamma, 0.0, 1.0)
    consts = dict(c_lam_d=c_lam_d, c_lam_eps=c_lam_eps, c_alpha_lam=c_alpha_lam, c_alpha_sq=c_alpha_sq,
                  c_alpha_eps=c_alpha_eps, c_delta1=c_delta1, c_delta0=c_delta0, c_m=c_m, m_power=m_power)
    consts = {k: check.positive(k, v) for k, v in consts.items()}
    if m is None:
        log_m = math.log(consts["c_m"]) + consts["m_power"] * math.log(d)
        if log_m > 62 * math.log(2):  # m must be a count (and would not fit in memory anyway)
            raise ValueError(f"m = c_m d^m_power = exp({log_m:.1f}) is too large for d = {d}: give m, or a smaller "
                             "c_m or m_power")
        m = max(1, math.ceil(consts["c_m"] * float(d) ** consts["m_power"]))
    m = check.integer("m", m, 1)
    if lam is None:
        lam = theorem1_lam(d, eps, consts["c_lam_d"], consts["c_lam_eps"])
    lam = check.positive("lam", lam)
    if alpha is None:
        alpha = theorem1_alpha(d, eps, lam, consts["c_alpha_lam"], consts["c_alpha_sq"], consts["c_alpha_eps"])
    if alpha == 0:
        raise ValueError(f"alpha underflows float64 for d = {d}, eps = {eps!r}, lam = {lam!r}: choose a larger eps")
    alpha = check.positive("alpha", alpha)
    # in logs: delta0 underflows before alpha does
    if delta1 is None:
        log_delta1 = math.log(consts["c_delta1"]) + 1.5 * math.log(alpha) - 0.5 * math.log(m)
    else:
        log_delta1 = math.log(check.positive("delta1", delta1))
    if delta0 is None:
        log_delta0 = math.log(consts["c_delta0"]) + log_delta1 + math.log(alpha) - 0.5 * math.log(math.log(d))
    else:
        log_delta0 = math.log(check.positive("delta0", delta0))
    delta1, delta0 = math.exp(log_delta1), math.exp(log_delta0)
    if not delta0 > 0:
        raise ValueError(
            f"delta0 = exp({log_delta0:.1f}) underflows float64 for d = {d}, eps = {eps!r}: "
            "choose a larger eps or larger constants (c_delta0, c_alpha_eps, ...)"
        )
    if not alpha < 1:
        raise ValueError(f"alpha must be < 1, got {alpha!r} from the constants given (decrease c_alpha_*)")
    return Theorem1Parameters(d=d, eps=eps, lam=lam, alpha=alpha, delta1=delta1, delta0=delta0, m=m, gamma=gamma)
