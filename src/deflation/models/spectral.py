"""Definition 1's geometry: misalignments with the ground truth, and the spectrum at order 2.

At order ``p >= 3`` every column (or rank-one term) of a model is a candidate for Definition 1 by
itself. At order 2 it is not: ``W`` and ``W Q`` give the same ``T = W W^T`` for every rotation
``Q`` (and ``W_1 W_2^T`` is unchanged by ``W_1 Q, W_2 Q^{-T}``), and under the flow every column
mixes the directions. There Definition 1 is read from the spectrum of ``T``: its eigenpairs
(``W W^T``) or singular pairs (``W_1 W_2^T``), each a rank-one term of ``T`` of its own. Both are
computed here from ``m x m`` Gram matrices, in ``O(d m^2 + m^3)``, never from a ``d x d`` array:

- :func:`eigenpairs`: ``W W^T = sum_k lam_k v_k v_k^T`` from ``G = W^T W = Q diag(lam) Q^T``:
  ``v_k = W q_k / sqrt(lam_k)``;
- :func:`singular_pairs`: ``W_1 W_2^T = sum_k s_k x_k y_k^T`` from ``G_1^{1/2} G_2 G_1^{1/2} = Z
  diag(s^2) Z^T`` (``G_k = W_k^T W_k``, ``G_1^{1/2}`` its symmetric square root, no inverse):
  ``y_k`` is ``W_2 G_1^{1/2} z_k`` normalized and ``x_k`` is ``W_1 W_2^T y_k`` normalized.

Both work on log-norm coordinates ``w_j = exp(rho_j) ubar_j`` scaled by the largest column norm, so
a state at any scale (``1e-15``, ``1e-100``) has its spectrum with full relative accuracy; they
return each pair's *log-size* ``log sqrt(lam_k)`` (``log sqrt(s_k)``: the norm ``|w|`` of the
rank-one term ``w w^T`` it equals, or the geometric mean of the factor norms of a balanced
``w_1 w_2^T``), largest first. Resolution: the eigenvalues of a Gram matrix carry an absolute
error of about ``eps`` times the largest, so those below ``m eps lam_max`` are not resolved and
are reported at that floor (and the pairs closer than it are not told apart in the derivatives).
Definition 1 at order 2 thus needs ``delta1^2 >> m eps lam_max``: with ``|T*| ~ 1`` and ``m = 50``,
``delta1 >> 1e-7`` (the default ``1e-3`` is far above).

Derivatives: the event location needs the time derivative of every quantity (a Jacobian-vector
product along the flow). The eigen-decomposition's is first-order perturbation theory
(:func:`eigh_descending`), ``d lam_k = q_k^T dG q_k`` and ``d q_k = sum_l q_l (q_l^T dG q_k) /
(lam_k - lam_l)`` over the pairs resolved apart (the others do not rotate into each other).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from ..contract import matmul, sum_rows


def misalignments(X: Float[Array, "d m"], U: Float[Array, "d r"]) -> list[Float[Array, " m"]]:
    """``1 - <u_i, x_j>^2`` for every unit column ``x_j`` of ``X`` and every ``u_i``, one row (m,)
    per ``i``, computed as ``|x - <u_i, x> u_i|^2`` without the cancellation of ``1 - <u_i, x>^2``
    (resolved for ``alpha`` down to ~1e-8, where ``1 - alpha^2`` is 1 in float64)."""
    C = matmul(U.T, X)  # (r, m)
    # one row per i: XLA fuses each into its sum over d
    return [sum_rows((X - C[i][None, :] * U[:, i][:, None]) ** 2) for i in range(U.shape[-1])]


def _unit(X: Float[Array, "d m"]) -> Float[Array, "d m"]:
    """The columns of ``X`` scaled to unit length (a zero column stays 0: an unresolved pair)."""
    n = jnp.sqrt(sum_rows(X * X))
    return X / jnp.where(n > 0, n, 1.0)[None, :]


def _resolution(w: Float[Array, " m"]) -> Float[Array, ""]:
    """The smallest eigenvalue resolved next to the largest of ``w``: ``m eps max(w)``."""
    return w.shape[-1] * jnp.finfo(w.dtype).eps * jnp.max(jnp.abs(w))


@jax.custom_jvp
def eigh_descending(G: Float[Array, "m m"]) -> tuple[Float[Array, " m"], Float[Array, "m m"]]:
    """``(w, Q)`` with ``G = Q diag(w) Q^T``, ``w`` in decreasing order, for a symmetric ``G``;
    its derivative (a JVP) is first-order perturbation theory over the eigenvalues resolved apart
    (module docstring): finite even where ``G`` has repeated eigenvalues."""
    w, Q = jnp.linalg.eigh(G)
    return w[::-1], Q[:, ::-1]


@eigh_descending.defjvp
def _eigh_descending_jvp(primals, tangents):
    (G,), (dG,) = primals, tangents
    w, Q = eigh_descending(G)
    dGq = Q.T @ dG @ Q
    dGq = 0.5 * (dGq + dGq.T)
    gap = w[None, :] - w[:, None]  # gap[l, k] = w_k - w_l
    apart = jnp.abs(gap) > _resolution(w)
    F = jnp.where(apart, 1.0 / jnp.where(apart, gap, 1.0), 0.0)
    return (w, Q), (jnp.diagonal(dGq), Q @ (F * dGq))


def _scaled(rho: Float[Array, " m"], u: Float[Array, "d m"]) -> tuple[Float[Array, ""], Float[Array, "d m"]]:
    """``(s, W')`` with ``W = exp(s) W'`` for ``W = exp(rho) u``: ``s = max(rho)``, so the largest
    column of ``W'`` has norm 1 whatever the scale of ``W``."""
    s = jnp.max(rho)
    return s, jnp.exp(rho - s)[None, :] * u


def _floored(w: Float[Array, " m"]) -> tuple[Float[Array, " m"], Bool[Array, " m"]]:
    """``(w', resolved)``: ``w`` with the eigenvalues below :func:`_resolution` set to it."""
    floor = _resolution(w)
    resolved = w > floor
    return jnp.where(resolved, w, floor), resolved


def eigenpairs(rho: Float[Array, " m"], u: Float[Array, "d m"]) -> tuple[Float[Array, " m"], Float[Array, "d m"]]:
    """The eigenpairs of ``W W^T``, ``W = exp(rho) u`` (unit columns ``u``), largest first:
    ``(log sqrt(lam_k), v_k)`` for the ``m`` eigenvalues of ``W^T W`` (its non-zero spectrum, and
    zeros at the resolution floor when ``m > d``) with unit eigenvectors ``v_k`` (module docstring)."""
    s, Ws = _scaled(rho, u)
    w, Q = eigh_descending(Ws.T @ Ws)
    w, _ = _floored(w)
    V = _unit(Ws @ (Q / jnp.sqrt(w)[None, :]))
    return s + 0.5 * jnp.log(w), V


def _sqrt_psd(G: Float[Array, "m m"]) -> Float[Array, "m m"]:
    """The symmetric square root of a positive semi-definite ``G`` (its unresolved eigenvalues as 0)."""
    w, E = eigh_descending(G)
    ok = w > _resolution(w)
    root = jnp.where(ok, jnp.sqrt(jnp.where(ok, w, 1.0)), 0.0)
    return (E * root[None, :]) @ E.T


def singular_pairs(rho1: Float[Array, " m"], u1: Float[Array, "d m"], rho2: Float[Array, " m"],
                   u2: Float[Array, "d m"]) -> tuple[Float[Array, " m"], Float[Array, "d m"], Float[Array, "d m"]]:
    """The singular pairs of ``W_1 W_2^T`` (``W_k = exp(rho_k) u_k``), largest first:
    ``(log sqrt(s_k), x_k, y_k)`` with ``W_1 W_2^T = sum_k s_k x_k y_k^T`` over the ``m`` singular
    values of the Gram route (module docstring), ``x_k``, ``y_k`` unit vectors."""
    s1, A = _scaled(rho1, u1)
    s2, B = _scaled(rho2, u2)
    root = _sqrt_psd(A.T @ A)
    w, Z = eigh_descending(root @ (B.T @ B) @ root)  # the squared singular values s_k^2 of A B^T
    w, _ = _floored(w)
    Y = _unit(B @ (root @ Z))
    X = _unit(A @ (B.T @ Y))
    return 0.5 * (s1 + s2) + 0.25 * jnp.log(w), X, Y
