"""Proposition 1 (the induction hypothesis of Algorithm 2) as monitors over one phase.

Given Definition 1's membership on a phase's event grid (:func:`deflation.definition1.track`), the
four claims of Proposition 1 become extremes over the grid:

(a) ``max`` over ``t`` and ``w in S_k`` of ``1 - wbar_k^2`` (claim: ``<= alpha``);
(b) ``max`` over ``t`` with ``S_k`` non-empty of the ``|w|^2``-weighted average ``E_{k,w} (1 - wbar_k^2)``
    (claim: ``<= alpha^2 + 4 s m delta1^2``);
(c) ``min`` and ``max`` over ``t`` of ``a_k - ahat_k`` (claims: ``>= lam/6 - s m delta1^2``, and
    ``<= lam + s m delta1^2`` when ``a_k >= beta^{(s)} / (1 - gamma)``);
(d) ``max`` over ``t`` of ``log |w|`` over columns outside every ``S_k`` (claim: ``<= log delta1``).

The misalignment ``1 - wbar_k^2`` of a member is measured against its own ``S_k`` direction
(:func:`deflation.definition1.observe`), without cancellation, so (a) and (b) resolve Theorem 1's
``alpha^2 ~ 1e-16``. A minimum over an empty set is ``+inf`` and a maximum ``-inf``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .definition1 import Observation, Tracked, by_group


def proposition1(obs: Observation, tracked: Tracked, a: Float[Array, " r"]) -> dict[str, Array]:
    """The monitors (a)-(d) over one phase's grid: ``misalignment_max``, ``misalignment_avg_max``,
    ``gap_min``, ``gap_max`` (r,) and ``log_norm_outside_max`` ()."""
    r = a.shape[0]
    member_t = tracked.member_t
    omega = jnp.exp(2.0 * obs.rho)
    ahat = tracked.ahat
    weighted = by_group(jax.ops.segment_sum, omega * obs.mis, member_t, r)
    nonempty = ahat > 0
    avg = jnp.where(nonempty, weighted / jnp.where(nonempty, ahat, 1.0), -jnp.inf)
    gap = a[None, :] - ahat
    return dict(
        misalignment_max=by_group(jax.ops.segment_max, obs.mis, member_t, r).max(axis=0),
        misalignment_avg_max=avg.max(axis=0),
        gap_min=gap.min(axis=0),
        gap_max=gap.max(axis=0),
        log_norm_outside_max=jnp.where(member_t < 0, obs.rho, -jnp.inf).max(),
    )
