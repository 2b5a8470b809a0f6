"""Definition 2 of the paper: good / potential / bad (re-)initialized columns of ``W``.

At the start ``(s, 0)`` of epoch ``s`` each column ``v`` outside every ``S_i`` (Definition 1),
i.e. each freshly (re-)initialized column, is classified per ground-truth direction ``i`` by its
squared correlation ``vbar_i^2 = <u_i, v/|v|>^2``:

    Gamma_i = 1 / (8 a_i t1')   if S_i^{(s,0)} is empty,   Gamma_i = 1 / (8 lam t1')  otherwise,
    rho_i   = c_rho Gamma_i,
    good_i  = { v : vbar_i^2 >= Gamma_i + rho_i  and  vbar_j^2 <= Gamma_j - rho_j for all j != i },
    pot_i   = { v : vbar_i^2 >= Gamma_i - rho_i },
    bad     = { v : v in pot_i and v in pot_j for some i != j },

with ``t1' = Theta(d / (beta log d))`` the first part of Phase 1 (Lemma 4); Algorithm 2 uses
``t1' = c1 d / (beta log d)``. ``Gamma_i`` is the correlation at which the tensor power dynamics
(paper Eq. 1) of a column blows up within ``t1'``: Lemma 5 says only good/potential columns
grow, good columns discover their direction, and bad columns do not exist w.h.p.

Directions with ``a_i = 0`` get ``Gamma_i = inf`` (no column is ever potential for them), which is
the paper's convention ``r = d`` with zero weights.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .dynamics import normalize
from .target import Target

#: Default ``c_rho`` ("a small enough absolute constant" in Definition 2).
C_RHO = 0.1


class Partition(eqx.Module):
    """Definition 2 of one (re-)initialization.

    Attributes:
        Gamma: ``Gamma_i`` (r,).
        margin: Definition 2's ``rho_i = c_rho Gamma_i`` (r,), the margin around ``Gamma_i``
            (named apart from the log-norms ``rho`` of the state).
        good: ``good[i, k]``: column k is in ``S_{i,good}`` (r, m).
        potential: ``potential[i, k]``: column k is in ``S_{i,pot}`` (r, m).
        bad: column k is in ``S_bad`` (m,).
    """

    Gamma: Float[Array, " r"]
    margin: Float[Array, " r"]
    good: Bool[Array, "r m"]
    potential: Bool[Array, "r m"]
    bad: Bool[Array, " m"]

    def counts(self) -> tuple[Int[Array, " r"], Int[Array, " r"], Int[Array, ""]]:
        """``(|S_{i,good}| (r,), |S_{i,pot}| (r,), |S_bad|)``."""
        return self.good.sum(-1), self.potential.sum(-1), self.bad.sum(-1)


def partition_thresholds(a, lam, t1_prime, discovered, c_rho=C_RHO):
    """``(Gamma (r,), rho (r,))`` of Definition 2 for ground-truth weights ``a`` (r,), ``discovered``
    (r,) bool (``S_i^{(s,0)}`` non-empty), ``t1' > 0``."""
    rate = jnp.where(discovered, lam, a)
    Gamma = 1.0 / (8.0 * rate * t1_prime)  # inf where the rate is 0
    return Gamma, c_rho * Gamma


def partition(ubar: Float[Array, "d m"], eligible: Bool[Array, " m"], target: Target, Gamma, rho) -> Partition:
    """Definition 2's good / potential / bad sets of the columns ``ubar`` (any norm) that are
    ``eligible`` (not in any ``S_i``; ineligible columns belong to no set)."""
    C2 = (target.U.T @ normalize(ubar)) ** 2  # (r, m): vbar_i^2
    infinite = jnp.isinf(Gamma)  # a_i = 0: inf - inf would be nan
    lo = jnp.where(infinite, jnp.inf, Gamma - rho)[:, None]
    hi = jnp.where(infinite, jnp.inf, Gamma + rho)[:, None]
    above_lo = C2 >= lo
    below_lo = C2 <= lo
    r = C2.shape[0]
    others_below = (below_lo.sum(0)[None, :] - below_lo) == r - 1  # all j != i below Gamma_j - rho_j
    good = (C2 >= hi) & others_below & eligible[None, :]
    potential = above_lo & eligible[None, :]
    bad = (above_lo.sum(0) >= 2) & eligible
    return Partition(Gamma=Gamma, margin=rho, good=good, potential=potential, bad=bad)
