"""Gram-matrix contractions of ``T = sum_j omega_j xbar_j^{(x)p}`` and ``T*``: the only O(m^2 d) kernels.

The model is stored as weights ``omega_j = |w_j|^2`` and unit directions ``xbar_j``, so that
``w_j^{(x)p} / |w_j|^{p-2} = omega_j xbar_j^{(x)p}`` (paper Section 2). Every quantity is a
function of the Gram matrices ``X^T X`` (m, m), ``U^T X`` (r, m) and ``U^T U`` (r, r): nothing here
forms a d^p array (:mod:`deflation.dense` does, for checks at small d).

Two routes:

- the float route (:func:`residual_vectors`, :func:`residual_norm_sq_fast`) is the O(m^2 d) kernel
  of the vector field;
- the precise route (:func:`residual_norm_sq_precise`, :func:`evaluate_residual_precise`) does the
  same sums in double-double arithmetic (:mod:`deflation._dd`) so that ``|T - T*|_F^2`` stays
  accurate far below the ``~1e-16 |T*|^2`` where the float Gram formula, which squares before it
  subtracts, is pure rounding noise.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jax.custom_derivatives import SymbolicZero
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from . import _dd as dd
from .target import Target

# ---------------------------------------------------------------------------- helpers


#: Power of two ``2^K`` by which a column is scaled where ``sum(W * W)`` under- or overflows
#: (:func:`column_norms`), per floating dtype: every float times ``2^K`` (small columns) or ``2^-K``
#: (large ones) has a square in the normal range.
NORM_SCALE_EXPONENT = {np.dtype(np.float64): 600, np.dtype(np.float32): 90}


def times_power_of_two(x: Float[Array, "..."], k: int) -> Float[Array, "..."]:  # noqa: UP037  (a jaxtyping shape, not a forward reference)
    """``x * 2^k`` exactly for ``k > 0``, subnormal ``x`` included (float32 or float64).

    XLA on CPU treats subnormal operands of arithmetic as zero (and ``x > 0`` as false), so a
    subnormal entry is scaled through its bits: its value is ``mantissa * 2^(emin - nmant)``, and the
    integer mantissa converts to a float exactly.
    """
    info = jnp.finfo(x.dtype)
    ints = {64: jnp.int64, 32: jnp.int32}[info.bits]
    bits = jax.lax.bitcast_convert_type(x, ints)
    nmant = int(info.nmant)
    exponent = (bits >> nmant) & ((1 << (info.bits - 1 - nmant)) - 1)
    mantissa = (bits & ((1 << nmant) - 1)).astype(x.dtype)
    sign = jnp.where(bits < 0, -1.0, 1.0).astype(x.dtype)
    subnormal = sign * mantissa * jnp.asarray(2.0 ** (k + int(info.minexp) - nmant), x.dtype)
    return jnp.where(exponent == 0, subnormal, x * jnp.asarray(2.0**k, x.dtype))


def log_positive(x: ArrayLike) -> Float[Array, "..."]:  # noqa: UP037  (a jaxtyping shape, not a forward reference)
    """``log x`` for positive ``x``, exact for subnormal ``x`` too (XLA:CPU's ``log`` treats a
    subnormal operand as zero and returns ``-inf``); the same bits as ``jnp.log`` for normal ``x``.
    Used for the thresholds ``delta0``, ``delta1``, ``alpha`` and ``lam``, which may be that small."""
    x = jnp.asarray(x)
    k = NORM_SCALE_EXPONENT.get(np.dtype(x.dtype))
    if k is None:
        return jnp.log(x)
    info = jnp.finfo(x.dtype)
    ints = {64: jnp.int64, 32: jnp.int32}[info.bits]
    bits = jax.lax.bitcast_convert_type(x, ints)
    nmant = int(info.nmant)
    subnormal = ((bits >> nmant) & ((1 << (info.bits - 1 - nmant)) - 1) == 0) & (bits != 0)
    scaled = jnp.log(times_power_of_two(jnp.where(subnormal, x, 1.0), k)) - k * math.log(2.0)
    return jnp.where(subnormal, scaled, jnp.log(x))


def column_norms(W: Float[Array, "*B d m"]) -> tuple[Float[Array, "*B m"], Float[Array, "*B m"], Float[Array, "*B m"],
                                                      Float[Array, "*B d m"]]:
    """``(omega, norm, log_norm, Wbar)`` of every column ``w_j`` of ``W``: ``omega_j = |w_j|^2``,
    ``norm_j = |w_j|``, ``log_norm_j = log |w_j|`` and ``Wbar[:, j] = w_j / |w_j|``, without underflow
    or overflow for any finite ``W``.

    ``sum(W * W)`` loses the norm once the squares leave the normal range (``|w| < ~1e-154``
    underflows to 0, ``|w| > ~1e154`` overflows). There the column is first scaled exactly by
    ``2^K`` (small columns, subnormal entries included: :func:`times_power_of_two`) or ``2^-K``
    (large ones), ``K`` = :data:`NORM_SCALE_EXPONENT`, so that ``log |w_j|`` and ``Wbar`` are
    accurate for every non-zero column, down to entries of the smallest subnormal (5e-324 in
    float64). Where ``sum(W * W)`` is safe (at least ``tiny / eps``, about 1e-292 in float64, and
    finite) the plain formulas are used, so results at ordinary scales are those of
    ``sum(W * W)`` bit for bit. ``omega`` itself underflows to 0 (or overflows to inf) where
    ``|w|^2`` is not representable, ``norm`` where ``|w|`` is not. A column that is exactly zero
    gets ``omega = norm = 0``, ``log_norm = -inf`` and ``Wbar = 0``. Other dtypes (float16) use the
    plain formulas only.
    """
    k = NORM_SCALE_EXPONENT.get(np.dtype(W.dtype))
    if k is None:
        omega = jnp.sum(W * W, axis=-2)
        norm = jnp.sqrt(omega)
        Wbar = jnp.where(norm[..., None, :] > 0, W / jnp.where(norm > 0, norm, 1.0)[..., None, :], 0.0)
        return omega, norm, 0.5 * jnp.log(omega), Wbar
    info = jnp.finfo(W.dtype)
    square = jnp.sum(W * W, axis=-2)
    plain = jnp.isfinite(square) & (square >= info.tiny / info.eps)
    large = ~jnp.isfinite(square)
    # Each route sees only its own columns (the others get harmless stand-ins), so that neither
    # makes an inf or a NaN, not even in a derivative that the final select discards.
    Wp = jnp.where(plain[..., None, :], W, 1.0)
    omega = jnp.sum(Wp * Wp, axis=-2)
    norm = jnp.sqrt(omega)
    Wbar = Wp / norm[..., None, :]
    # the scaled route: V = 2^k W (small columns) or 2^-k W (large ones), exactly
    Ws = jnp.where(plain[..., None, :], jnp.asarray(2.0**-k, W.dtype), W)
    V = jnp.where(large[..., None, :], Ws * jnp.asarray(2.0**-k, W.dtype), times_power_of_two(Ws, k))
    shift = jnp.where(large, k, -k).astype(W.dtype)  # log2 |w| = log2 |V| + shift
    v2 = jnp.sum(V * V, axis=-2)
    vnorm = jnp.sqrt(v2)
    scale = jnp.exp2(shift).astype(W.dtype)
    scaled_norm = vnorm * scale
    scaled_log = 0.5 * jnp.log(v2) + shift * math.log(2.0)
    scaled_bar = V / jnp.where(vnorm > 0, vnorm, 1.0)[..., None, :]
    return (
        jnp.where(plain, omega, scaled_norm * scaled_norm),
        jnp.where(plain, norm, scaled_norm),
        jnp.where(plain, 0.5 * jnp.log(omega), scaled_log),
        jnp.where(plain[..., None, :], Wbar, scaled_bar),
    )


def split_norms(W: Float[Array, "*B d m"]) -> tuple[Float[Array, "*B m"], Float[Array, "*B d m"]]:
    """``(omega, Wbar)`` with ``omega_j = |w_j|^2`` and ``Wbar[:, j] = w_j / |w_j|`` (0 for w_j = 0);
    ``Wbar`` is exact at every scale, see :func:`column_norms`."""
    omega, _, _, Wbar = column_norms(W)
    return omega, Wbar


#: On CPU, products whose contraction is at most this long are summed as outer products.
UNROLL_MAX = 24


def _unrolled(k: int) -> bool:
    return k <= UNROLL_MAX and jax.default_backend() == "cpu"


def materialize(x: Array) -> Array:
    """``x`` unchanged, computed once rather than inside each consumer.

    Exact for every finite float except subnormals (``|x| < 2.2e-308`` in float64), which
    XLA:CPU's division may flush to zero; an infinite entry becomes NaN.

    XLA fuses cheap element-wise producers into their consumers; when a consumer reads each
    element many times (an outer-product sum reads each entry of its operands d or m times), the
    producer is recomputed every time. A division is an "expensive" producer that XLA does not
    duplicate, so ``x / (1 + 0 x)`` makes ``x`` one array written once (the gain is measured in
    ``benchmarks/README.md``).
    """
    return x / (1.0 + 0.0 * x)


def outer_product_sum(A: Float[Array, "... n k"], B: Float[Array, "... k p"]) -> Float[Array, "... n p"]:
    """``A @ B`` as the sum of ``k`` outer products ``A[:, i] B[i, :]``, added in order ``i = 0, 1, ...``.

    XLA fuses it into one element-wise loop, which beats a dot when ``k`` is short and the
    matrices small (see :func:`matmul`). The batched and the one-seed forms of the vector field
    both use it for the target's products, so that these round the same way in both.
    """
    out = A[..., :, 0, None] * B[..., 0, None, :]
    for i in range(1, A.shape[-1]):
        out = out + A[..., :, i, None] * B[..., i, None, :]
    return out


@custom_vmap
def _matmul_vmappable(A, B):
    return A @ B


@_matmul_vmappable.def_vmap
def _matmul_batched(axis_size, in_batched, A, B):
    A = A if in_batched[0] else jnp.broadcast_to(A, (axis_size,) + A.shape)
    B = B if in_batched[1] else jnp.broadcast_to(B, (axis_size,) + B.shape)
    if not _unrolled(A.shape[-1]):
        return A @ B, True
    return outer_product_sum(A, B), True


@jax.custom_jvp
def matmul(A: Float[Array, "n k"], B: Float[Array, "k p"]) -> Float[Array, "n p"]:
    """``A @ B``, with a faster batched form on CPU.

    Called on single matrices it is ``A @ B``. Under ``vmap`` over seeds on CPU, when the
    contraction ``k`` is short (``<= UNROLL_MAX``), it is the sum of ``k`` outer products, which
    XLA fuses into one vectorized loop, instead of XLA:CPU's batched dot, whose per-matrix
    overhead dominates at these sizes (``benchmarks/README.md``). Same value up to the order of the
    additions; each seed's value does not depend on the batch either way. Differentiable: its
    JVP is written in the same plain form (outer products for a short contraction on CPU, which a
    JVP under ``vmap`` needs as much as the value), skips zero tangents, and is transposable.
    """
    return _matmul_vmappable(A, B)


def _product(A, B):
    """``A @ B`` in plain, transposable operations: :func:`outer_product_sum` when the contraction
    is short on CPU (fused, and fast under ``vmap``, where a batched dot is not), else ``@``."""
    return outer_product_sum(A, B) if _unrolled(A.shape[-1]) else A @ B


def _matmul_jvp(primals, tangents):
    A, B = primals
    dA, dB = tangents
    out = matmul(A, B)
    terms = [_product(dA, B)] if not isinstance(dA, SymbolicZero) else []
    if not isinstance(dB, SymbolicZero):
        terms.append(_product(A, dB))
    return out, sum(terms[1:], terms[0]) if terms else jnp.zeros_like(out)


matmul.defjvp(_matmul_jvp, symbolic_zeros=True)


#: On CPU, a batch of seeds whose per-seed Gram product ``Xbar^T Xbar`` has at least this many
#: flops (``2 m^2 d``) is evaluated one seed at a time; below it, as one batched computation.
SEQUENTIAL_MIN_FLOPS = 2**21


def sequential(d: int, m: int, backend: str | None = None) -> bool:
    """Whether a batch of seeds of ``m`` columns in ``d`` dimensions has its vector field evaluated
    one seed at a time (on CPU, when ``2 m^2 d >= SEQUENTIAL_MIN_FLOPS``; see
    :func:`residual_vector`). ``backend``: default JAX's."""
    backend = jax.default_backend() if backend is None else backend
    return 2 * m * m * d >= SEQUENTIAL_MIN_FLOPS and backend == "cpu"


def _residual_vector_plain(Xbar, omega, U, a, p: int):
    """``R(x_j^{p-1}, I)`` for every column, written the obvious way (the reference and the jvp)."""
    return U @ (a[:, None] * (U.T @ Xbar) ** (p - 1)) - Xbar @ (omega[:, None] * (Xbar.T @ Xbar) ** (p - 1))


@functools.lru_cache(maxsize=16)
def _residual_vector_fn(p: int):
    def single(Xbar, omega, U, a):
        # The transposes are written out (materialized) so that XLA:CPU runs ordinary row-major
        # products: its dot contracting the leading axis is slower. The target's and the model's
        # parts stay two products that are subtracted, as in the batched form.
        r = U.shape[1]
        if _unrolled(Xbar.shape[0]) and _unrolled(r):
            # the target's short products as outer-product sums (faster than dots at these sizes,
            # benchmarks/README.md)
            C = outer_product_sum(U.T, Xbar)
            target_part = outer_product_sum(U, materialize(a[:, None] * C ** (p - 1)))
            G = materialize(Xbar.T) @ Xbar
        else:  # U^T Xbar and Xbar^T Xbar as one product [U, Xbar]^T Xbar
            CG = materialize(jnp.concatenate([U, Xbar], axis=1).T) @ Xbar  # (r + m, m)
            target_part, G = U @ (a[:, None] * CG[:r] ** (p - 1)), CG[r:]
        return target_part - Xbar @ (omega[:, None] * G ** (p - 1))

    def under_vmap(Xbar, omega, U, a):  # the short products as matmul's batched (unrolled) form
        # Xbar written once: it is an expression of the stage (a Runge-Kutta combination of the
        # earlier stages, normalized) that XLA would otherwise recompute for every entry of the
        # Gram products that read it (r and m times over)
        Xbar = materialize(Xbar)
        target_part = matmul(U, materialize(a[:, None] * matmul(U.T, Xbar) ** (p - 1)))
        return target_part - Xbar @ (omega[:, None] * matmul(Xbar.T, Xbar) ** (p - 1))

    vmappable = custom_vmap(single)

    @vmappable.def_vmap
    def _batched(axis_size, in_batched, Xbar, omega, U, a):
        d, m = Xbar.shape[-2:]
        # seed by seed for large seeds whatever the batch size (a batch of one included), so that
        # a seed's arithmetic, and hence its result, does not depend on the batch it is in
        if in_batched == [True, True, False, False] and sequential(d, m):
            return jax.lax.map(lambda xo: single(*xo, U, a), (Xbar, omega)), True
        args = [x if b else jnp.broadcast_to(x, (axis_size,) + x.shape)
                for x, b in zip((Xbar, omega, U, a), in_batched)]
        return jax.vmap(under_vmap)(*args), True

    @jax.custom_jvp
    def fn(Xbar, omega, U, a):
        return vmappable(Xbar, omega, U, a)

    @fn.defjvp
    def _jvp(primals, tangents):
        tangent = jax.jvp(functools.partial(_residual_vector_plain, p=p), primals, tangents)[1]
        return fn(*primals), tangent

    return fn


def residual_vector(
    Xbar: Float[Array, "d m"], omega: Float[Array, " m"], U: Float[Array, "d r"], a: Float[Array, " r"], p: int
) -> Float[Array, "d m"]:
    """``R(x_j^{p-1}, I) = U (a * (U^T x_j)^{p-1}) - Xbar (omega * (Xbar^T x_j)^{p-1})`` for every
    column ``x_j`` of ``Xbar`` (4 m^2 d + 4 r m d flops), laid out for the backend:

    - one seed: the Gram product ``Xbar^T Xbar`` as a dot; on CPU with ``d`` and ``r`` at most
      ``UNROLL_MAX`` the target's two short products as :func:`outer_product_sum` (as under
      ``vmap``), otherwise ``[U, Xbar]^T Xbar`` as one product and the target's as a dot;
    - under ``vmap`` over seeds on CPU, when one seed's Gram product is large
      (``2 m^2 d >= SEQUENTIAL_MIN_FLOPS``): the seeds one after another. Each seed's products are
      then full-size matrix multiplies that use every core, and only one seed's (m, m)
      intermediates are alive at a time. For large seeds the batched form spends much of its time
      in page faults on fresh intermediates (``benchmarks/README.md``);
    - otherwise, one batched computation whose short products (``d``, ``r`` <= ``UNROLL_MAX``) are
      :func:`matmul`'s fused outer products.

    Same value up to the order of additions, whatever the batch; differentiable (the derivative
    uses ``@``).
    """
    return _residual_vector_fn(int(p))(Xbar, omega, U, a)


def _rows_plain(X):
    """``X.sum(axis=-2)`` in plain, transposable operations: an unrolled chain of additions when
    the axis is short on CPU (as :func:`sum_rows` under ``vmap``), else XLA's reduction."""
    k = X.shape[-2]
    if not _unrolled(k):
        return X.sum(axis=-2)
    out = X[..., 0, :]
    for i in range(1, k):
        out = out + X[..., i, :]
    return out


@custom_vmap
def _sum_rows_vmappable(X):
    return X.sum(axis=-2)


@_sum_rows_vmappable.def_vmap
def _sum_rows_batched(axis_size, in_batched, X):
    return _rows_plain(X), True  # the rule only runs with X batched (its only argument)


@jax.custom_jvp
def sum_rows(X: Float[Array, "... k n"]) -> Float[Array, "... n"]:
    """``X.sum(axis=-2)``; under ``vmap`` on CPU, for a short axis, as an unrolled chain of
    additions (XLA:CPU's batched reduction over a non-minor axis is several times slower at these
    sizes; for one seed its own reduction is faster)."""
    return _sum_rows_vmappable(X)


@sum_rows.defjvp
def _sum_rows_jvp(primals, tangents):
    return sum_rows(primals[0]), _rows_plain(tangents[0])


# ---------------------------------------------------------------------------- float route


def residual_vectors(
    Xbar: Float[Array, "d m"], omega: Float[Array, " m"], target: Target
) -> tuple[Float[Array, " m"], Float[Array, "d m"]]:
    """For every unit column ``x_j`` of ``Xbar``: ``R(x_j^p)`` and ``R(x_j^{p-1}, I)``, R = T* - T.

    ``R(v^{p-1}, I) = U (a * (U^T v)^{p-1}) - Xbar (omega * (Xbar^T v)^{p-1})``: two Gram products
    and two thin matrix products, 4 m^2 d + 4 r m d flops.
    """
    Rvec = residual_vector(Xbar, omega, target.U, target.a, target.order)
    # the sum over d as sum_rows (XLA:CPU's batched reduction over d is slow), written once
    # (materialize): every entry of the field reads it
    Rp = materialize(sum_rows(Xbar * Rvec))
    return Rp, Rvec


def evaluate(
    X: Float[Array, "d m"], weights: Float[Array, " m"], V: Float[Array, "d k"], order: int
) -> Float[Array, " k"]:
    """``sum_j weights_j <x_j, v>^p`` for every column ``v`` of ``V`` (float route)."""
    return (weights[None, :] * (V.T @ X) ** order).sum(axis=1)


def frozen_residual_vectors(Xbar: Float[Array, "d m"],
                            target: Target) -> tuple[Float[Array, " m"], Float[Array, "d m"]]:
    """``(T*(x_j^p), T*(x_j^{p-1}, I))`` for unit columns: :func:`residual_vectors` with ``R``
    frozen at ``T*`` (the tensor-power dynamics of paper Eq. 1), ``4 r m d`` flops."""
    p = target.order
    C = target.U.T @ Xbar
    Rvec = target.U @ (target.a[:, None] * C ** (p - 1))
    return jnp.sum(target.a[:, None] * C**p, axis=0), Rvec


def residual_on(
    Xbar: Float[Array, "d m"], omega: Float[Array, " m"], target: Target, V: Float[Array, "d k"] | None = None,
    *, precise: bool = False,
) -> Float[Array, " k"]:
    """``(T* - T)(v^p)`` for every column ``v`` of ``V`` (default ``V = U``: the residual along each
    ground-truth direction, paper Figure 1's right panel), ``T = sum_j omega_j xbar_j^{(x)p}``.

    ``precise=False``: float route, ``T*(v^p) - sum_j omega_j <xbar_j, v>^p`` (resolved to about
    1e-16 of ``a``); ``precise=True``: double-double route (:func:`evaluate_residual_precise`),
    accurate to about 1e-30, for a fitted direction's residual on a log scale. The one routine for
    this quantity: the dynamics, the events, Algorithm 2 and the baselines all call it.
    """
    if precise:
        return evaluate_residual_precise(Xbar, omega, target, target.U if V is None else V)
    p = target.order
    if V is None:
        C = matmul(target.U.T, Xbar)  # (r, m); the fast batched form on CPU
        # the sum over columns as a matrix-vector product (XLA:CPU reduces (r, m) slowly under vmap)
        return evaluate(target.U, target.a, target.U, p) - C**p @ omega
    return evaluate(target.U, target.a, V, p) - evaluate(Xbar, omega, V, p)


def residual_norm_sq_fast(Xbar, omega, target: Target) -> tuple[Array, Array]:
    """``(|T - T*|_F^2, floor)`` by the float Gram formula.

    ``floor`` bounds the rounding error: ``64 eps`` times the sum of the absolute values of the
    three Gram terms. Values below it are noise.
    """
    p = target.order
    # the Gram products in matmul's fast batched form; each quadratic form as two matrix-vector
    # products (XLA:CPU's batched reduction of an m x m array is several times slower)
    G = matmul(Xbar.T, Xbar)
    C = matmul(target.U.T, Xbar)
    H = target.U.T @ target.U
    t_model = omega @ (G**p @ omega)
    t_cross = target.a @ (C**p @ omega)
    t_target = target.a @ (H**p @ target.a)
    scale = jnp.abs(t_model) + 2 * jnp.abs(t_cross) + jnp.abs(t_target)
    eps = jnp.finfo(Xbar.dtype).eps
    return t_model - 2 * t_cross + t_target, 64 * eps * scale


# ---------------------------------------------------------------------------- precise route


def _dd_cosines(X, Y, Ny, normalize_x: bool):
    """dd matrix ``<x_i, y_j> / (|x_i| |y_j|)`` (x normalized only if asked), ``Ny = |y_j|^2`` in dd."""
    G = dd.matmul_tn(X, Y)
    inv_y = dd.sqrt(Ny)
    if normalize_x:
        Nx = dd.sum(dd.two_prod(X, X), axis=0)
        denom = dd.mul((dd.sqrt(Nx)[0][:, None], dd.sqrt(Nx)[1][:, None]), (inv_y[0][None, :], inv_y[1][None, :]))
    else:
        denom = (jnp.broadcast_to(inv_y[0][None, :], G[0].shape), jnp.broadcast_to(inv_y[1][None, :], G[1].shape))
    safe = (jnp.where(denom[0] > 0, denom[0], 1.0), jnp.where(denom[0] > 0, denom[1], 0.0))
    q = dd.div(G, safe)
    zero = denom[0] <= 0
    return jnp.where(zero, 0.0, q[0]), jnp.where(zero, 0.0, q[1])


def residual_norm_sq_precise(X, omega, target: Target) -> tuple[Array, Array]:
    """``(|T - T*|_F^2, floor)`` in double-double arithmetic.

    ``T = sum_j omega_j (x_j/|x_j|)^{(x)p}``; the columns of ``X`` are normalized in dd, so they
    need not be exactly unit. ``omega = None`` means ``omega_j = |x_j|^2`` computed in dd, i.e.
    ``T = sum_j x_j^{(x)p} / |x_j|^{p-2}`` exactly for a raw float ``X = W``. The floor is
    ``2^-100`` times the sum of the absolute Gram terms (about ``1e-30 |T*|^2`` at the paper's scales).
    """
    p = target.order
    U, a = target.U, target.a
    Nx = dd.sum(dd.two_prod(X, X), axis=0)
    w = Nx if omega is None else dd.from_float(omega)
    cos_xx = _dd_cosines(X, X, Nx, normalize_x=True)
    cos_ux = _dd_cosines(U, X, Nx, normalize_x=False)
    H = dd.matmul_tn(U, U)
    Gp = dd.power(cos_xx, p)
    Cp = dd.power(cos_ux, p)
    Hp = dd.power(H, p)

    def quad(M, left: dd.DD, right: dd.DD):
        inner = dd.sum(dd.mul(M, (right[0][None, :], right[1][None, :])), axis=1)
        return dd.sum(dd.mul(inner, left), axis=0)

    t_model = quad(Gp, w, w)
    t_cross = quad(Cp, dd.from_float(a), w)
    t_target = quad(Hp, dd.from_float(a), dd.from_float(a))
    total = dd.add(dd.add(t_model, (-2.0 * t_cross[0], -2.0 * t_cross[1])), t_target)
    scale = jnp.abs(t_model[0]) + 2 * jnp.abs(t_cross[0]) + jnp.abs(t_target[0])
    return dd.to_float(total), scale * 2.0**-100


def evaluate_residual_precise(X, omega, target: Target, V) -> Array:
    """``(T* - T)(v^p)`` for every column of ``V`` in dd (``T`` as in :func:`residual_norm_sq_precise`)."""
    p = target.order
    Nx = dd.sum(dd.two_prod(X, X), axis=0)
    cos_vx = _dd_cosines(V, X, Nx, normalize_x=False)  # <v, xbar_j>
    model = dd.sum(dd.mul_f(dd.power(cos_vx, p), omega[None, :]), axis=1)
    UV = dd.matmul_tn(V, target.U)
    truth = dd.sum(dd.mul_f(dd.power(UV, p), target.a[None, :]), axis=1)
    return dd.to_float(dd.add(truth, dd.neg(model)))


#: The precise route is used automatically when d * m * (m + r) is at most this (see ``loss``).
PRECISE_AUTO_LIMIT = 2**22


def precise_by_default(d: int, m: int, r: int) -> bool:
    """Whether :func:`deflation.loss` uses the double-double route by default at this size."""
    return d * m * (m + r) <= PRECISE_AUTO_LIMIT


def precise_for_tolerance(a, U, order: int, tol: float, d: int, m: int) -> bool:
    """Whether a *trajectory's* loss and residuals need the double-double route, given the
    integration tolerance ``tol``: only when the integration floor at the fitted state,
    ``1/2 (10 (p + 2) tol sum_i a_i)^2`` (the floor of ``FlowResult.loss_floor`` once
    ``sum_j |w_j|^2 ~ sum_i a_i``), lies below 100 times the float route's rounding floor
    ``64 eps |T*|^2``; otherwise a float-route value above the floor is as truthful as the precise
    one, at a fraction of the cost. Never at sizes :func:`precise_by_default` declines. For the
    Figure 1 target the switch is near ``tol = 1e-8``: precise at ``1e-10``, float at ``1e-6``."""
    if not precise_by_default(d, m, len(a)):
        return False
    a, U = np.asarray(a, np.float64), np.asarray(U, np.float64)
    target_sq = float(a @ ((U.T @ U) ** order) @ a)
    integration = 0.5 * (10 * (order + 2) * tol * float(a.sum())) ** 2
    return bool(integration < 100 * 64 * np.finfo(np.float64).eps * target_sq)


def residual_norm_sq(Xbar, omega, target: Target, precise: bool | None = None):
    """``(|T - T*|_F^2, floor)``: precise route when asked or when small enough, else float route.

    ``omega = None`` takes ``Xbar`` as the raw columns of ``W`` (weights ``|w_j|^2``).
    """
    d, m = Xbar.shape
    if precise is None:
        precise = precise_by_default(d, m, target.r)
    if precise:
        return residual_norm_sq_precise(Xbar, omega, target)
    if omega is None:
        omega, Xbar = split_norms(Xbar)
    return residual_norm_sq_fast(Xbar, omega, target)
