"""Discrete gradient descent on a model's loss, with the flow's Definition 1 events.

:func:`gradient_descent` runs ``W_(k+1) = W_k - lr grad L(W_k)`` (``optax.sgd``, optionally with
momentum) from ``W0`` for ``horizon / lr`` iterations, on the same loss as
:func:`deflation.gradient_flow` (``1/2 |T - T*|_F^2 + lam/2 |W|_F^2``, any symmetric model of
:mod:`deflation.models`). Time is measured in the units of the flow, ``t = lr x iterations``: as
``lr -> 0`` the iterates follow the gradient flow at those times (forward Euler), so discovery and
fit times can be compared with the flow's directly, and a sweep over ``lr`` shows where discrete
steps stop following it.

Events. The iterates are observed on an *event grid* of ``event_points`` times ``t_k = k s lr``
(every ``s = ceil(n / (K - 1))`` iterations, ``n = ceil(horizon / lr)``, ``K = min(event_points,
n + 1)``; the run takes ``s (K - 1) >= n`` iterations, the horizon rounded up to a whole grid). At each grid point the
Definition 1 quantities are evaluated with :func:`deflation.definition1.observe`, their slopes from the flow's
vector field at the iterate, and :func:`deflation.definition1.track` locates the crossings between
grid points exactly as for the flow: a column joins ``S_i`` when its norm reaches ``delta1`` while
``wbar_i^2 >= 1 - alpha^2``, and ``i`` is fitted when its residual falls to ``fit_fraction a_i``
(or ``a_i - ahat_i <= 2 lam`` for the normalized model with ``lam > 0``). Between grid points the
located time is an interpolation; an event is never placed outside the grid interval in which its
quantity changed sign.

Status per seed, as for the flow (:class:`deflation.Status`): non-finite iterates
(the step diverged) or a loss that rose between grid points by more than its rounding (the step is
too large for the iterates to descend) are reported, never dropped.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from . import _validate as check
from .contract import residual_norm_sq
from .definition1 import observe, track
from .dynamics import to_lognorm
from .flow import failures, flow_model, loss_increased
from .state import check_W
from .status import Status
from .target import Target


class GDResult(eqx.Module):
    """What :func:`gradient_descent` returns (a leading batch axis ``B`` when ``W0`` was a batch).

    Attributes:
        ts: the event grid, ``lr x`` iterations (K,).
        loss: ``L(W)`` at the grid times, (B, K).
        discovery_time, fit_time: Definition 1's times in ``lr x iterations`` units, (B, r);
            ``inf`` if not within the run.
        member: each column's ``S_i`` index at the end, or -1, (B, m).
        W: the last iterate, (B, d, m).
        iterations: the number of iterations run (``s (K - 1)``).
        status: a :class:`deflation.Status` code: 0 success, 2 non-finite iterate, 4 the loss
            increased, (B,).
    """

    ts: Float[Array, " K"]
    loss: Float[Array, "*B K"]
    discovery_time: Float[Array, "*B r"]
    fit_time: Float[Array, "*B r"]
    member: Int[Array, "*B m"]
    W: Float[Array, "*B d m"]
    iterations: int = eqx.field(static=True)
    status: Int[Array, "*B"]

    def failed(self) -> list[tuple[int, str]]:
        """``[(batch index, reason), ...]`` for every seed whose status is not success."""
        return failures(self.status)


def optimizer(lr: Any, momentum: float | None = None) -> Any:
    """``optax.sgd(lr, momentum)`` (an ``optax.GradientTransformation``): plain gradient descent, or
    heavy-ball momentum (``trace <- g + momentum trace``, ``W <- W - lr trace``: an effective step
    of ``lr / (1 - momentum)`` once the trace settles, while the times here stay ``lr x
    iterations``). optax is imported here, when a descent runs, not with the package."""
    import optax

    return optax.sgd(lr, momentum=momentum)


def gradient_descent(
    target: Target,
    W0: Any,
    horizon: float,
    lr: float,
    *,
    model: Any = "normalized",
    momentum: float | None = None,
    lam: float = 0.0,
    delta1: float = 1e-3,
    alpha: float = 0.1,
    fit_fraction: float = 0.1,
    event_points: int = 512,
) -> GDResult:
    """Gradient descent with step ``lr`` on the loss of ``model``, for ``horizon / lr``
    iterations, with the discovery and fit times of Definition 1 in flow time units (module
    docstring).

    Args:
        target: the ground truth ``T*``.
        W0: initial ``W`` (d, m), or a batch (B, d, m) of seeds (one compiled call).
        horizon: the time ``lr x iterations`` to run to (> 0).
        lr: the learning rate (> 0).
        model: a symmetric model of :mod:`deflation.models` by name or value (``"normalized"``,
            ``"plain"``), at order ``p >= 3``.
        momentum: heavy-ball momentum in ``[0, 1)`` (``optax.sgd``'s), or None.
        lam, delta1, alpha, fit_fraction, event_points: as for :func:`deflation.gradient_flow`.

    Raises:
        ValueError / TypeError: a bad argument, named, before anything is traced; more than
            ``2^31 - 1`` iterations.
    """
    if not isinstance(target, Target):
        raise TypeError(f"target must be a deflation.Target, got {type(target).__name__}")
    model = flow_model(model, target)
    if model.factor_count(target.order) != 1:
        raise ValueError(f"model {model.name!r} is not run by gradient_descent: it descends a single factor matrix W "
                         "(a symmetric model: 'normalized' or 'plain'); the asymmetric model's flow is "
                         "gradient_flow's")
    horizon = check.positive("horizon", horizon)
    lr = check.positive("lr", lr)
    if momentum is not None:
        momentum = check.unit_interval_from_zero("momentum", momentum)
    lam = check.nonnegative("lam", lam)
    delta1 = check.positive("delta1", delta1)
    alpha = check.in_open_interval("alpha", alpha, 0.0, 1.0)
    fit_fraction = check.in_open_interval("fit_fraction", fit_fraction, 0.0, 1.0)
    event_points = check.integer("event_points", event_points, 2, 2**20)
    stride, event_points = event_grid(horizon, lr, event_points)
    W = check_W("W0", W0, target, batch=True)
    batched = W.ndim == 3
    W = W if batched else W[None]
    dtype = W.dtype
    out = _run(target, W, jnp.asarray(lr, dtype), jnp.asarray(lam, dtype), jnp.asarray(delta1, dtype),
               jnp.asarray(alpha, dtype), jnp.asarray(fit_fraction, dtype), model=model, momentum=momentum,
               stride=stride, points=event_points)
    if not batched:
        out = jax.tree_util.tree_map(lambda x: x[0], out)
    ts = jnp.arange(event_points, dtype=dtype) * (stride * lr)
    return GDResult(ts=ts, iterations=stride * (event_points - 1), **out)


def event_grid(horizon: float, lr: float, event_points: int) -> tuple[int, int]:
    """``(s, K)``: the iterations between grid points and the grid's size for a run of ``n =
    ceil(horizon / lr)`` iterations (module docstring: ``K = min(event_points, n + 1)``, ``s =
    ceil(n / (K - 1))``). Raises ``ValueError`` past ``2^31 - 1`` iterations."""
    wanted = math.ceil(horizon / lr)
    if wanted > check.MAX_STEPS_LIMIT:
        raise ValueError(f"horizon / lr = {horizon:g} / {lr:g} is {wanted} iterations, more than "
                         f"{check.MAX_STEPS_LIMIT}: take a larger lr or a shorter horizon")
    points = min(event_points, wanted + 1)  # at most one grid point per iteration
    return math.ceil(wanted / (points - 1)), points


def descend(target, W0, lr, lam, delta1, alpha, fit_fraction, *, model, momentum, stride: int, points: int):
    """The traceable core of :func:`gradient_descent` (the studies call it inside their compiled
    chunk): every seed of ``W0`` (B, d, m) for ``stride (points - 1)`` iterations, observed every
    ``stride``; ``target`` may hold one target per seed (``target.batched``). Returns a dict of
    :class:`GDResult`'s per-seed arrays."""
    opt = optimizer(lr, momentum)
    ts = jnp.arange(points, dtype=W0.dtype) * (stride * lr)
    m = W0.shape[-1]

    def at(W, target):
        y = to_lognorm(W)
        dydt = model.lognorm_field(y, target, lam)
        ob = observe(target, y, dydt, jnp.full((m,), -1, jnp.int32), model=model)
        omega, Wbar = model.unit_weights(W, target.order)
        sq, floor = residual_norm_sq(Wbar, omega, target, True)  # double-double: a rise is resolved
        return ob, (0.5 * sq + 0.5 * lam * jnp.sum(W * W), 0.5 * floor)

    def one(W, target):
        def step(carry, _):
            W, state = carry
            grad = -model.velocity(W, target, lam)
            updates, state = opt.update(grad, state, W)
            return (W + updates, state), None  # optax.apply_updates for one array

        def interval(carry, _):
            carry, _ = jax.lax.scan(step, carry, None, length=stride)
            return carry, at(carry[0], target)

        first = at(W, target)
        (W_end, _), rest = jax.lax.scan(interval, (W, opt.init(W)), None, length=points - 1)
        obs, (loss, floor) = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
        tr = track(ts, obs, jnp.full((m,), -1, jnp.int32), target.a, lam, delta1, alpha, fit_fraction, model=model,
                   order=target.order)
        finite = jnp.all(jnp.isfinite(W_end)) & jnp.all(jnp.isfinite(loss))
        rose = loss_increased(loss, floor)
        status = jnp.where(finite, jnp.where(rose, Status.LOSS_INCREASED, Status.SUCCESS),
                           Status.NONFINITE).astype(jnp.int32)
        return dict(loss=loss, discovery_time=tr.discovery_time, fit_time=tr.fit_time, member=tr.member, W=W_end,
                    status=status)

    return jax.vmap(one, in_axes=(0, 0 if target.batched else None))(W0, target)


_run = jax.jit(descend, static_argnames=("model", "momentum", "stride", "points"))
