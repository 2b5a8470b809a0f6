"""The ground-truth tensor ``T* = sum_i a_i u_i^{(x)p}`` (paper Section 2, "Problem setup")."""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _validate as check
from .dense import DENSE_MAX_BYTES, dense_power_sum
from .init import equiangular_columns, orthonormal_columns

#: The largest tensor order (an order is a static exponent; 10^18 overflowed inside ``jit``).
MAX_ORDER = 2**31 - 1


class Target(eqx.Module):
    """Ground truth ``T* = sum_i a_i u_i^{(x)p}``.

    Attributes:
        a: weights ``(r,)``, finite and ``>= 0`` (the paper sorts them and makes them sum to 1;
            this class does not require it).
        U: components ``(d, r)`` with unit columns.
        order: the tensor order ``p``, ``2 <= p <= 2^31 - 1`` (the paper's case is 4; order 2 is
            the matrix case, for the models of :mod:`deflation.models`).
        orthogonal: whether the columns of ``U`` were asked to be orthonormal (checked).
        factors: ``None`` for a symmetric target; for a general one,
            ``T* = sum_i a_i u_i^(1) (x) ... (x) u_i^(p)``, the ``p`` factor matrices ``(d, r)``
            (``U`` is the first), built with :meth:`asymmetric`; only the asymmetric model reads them.

    Construct with ``Target(a, U, order=4)`` for arbitrary unit columns (non-orthogonal targets,
    paper Appendix E), or with :meth:`basis` (``U = I[:, :r]``, the paper's case),
    :meth:`random_orthonormal` or :meth:`geometric` (Figure 1's weights). Input is checked in
    Python when it is concrete; a ``Target`` built from tracers inside ``jit`` is not checked there,
    but every public function checks the target it is given (:func:`as_target`). Integer ``a`` or
    ``U`` are converted to float64; float32 ones are kept (the flow then runs in the promoted dtype
    of the target and the state, see :func:`deflation.dynamics.working_dtype`).
    """

    a: Float[Array, "*B r"]
    U: Float[Array, "*B d r"]
    order: int = eqx.field(static=True, default=4)
    orthogonal: bool = eqx.field(static=True, default=False)
    factors: tuple[Float[Array, "*B d r"], ...] | None = None

    def __init__(self, a: Any, U: Any, order: int = 4, *, orthogonal: bool = False, factors: Any = None):
        order = check.integer("order", order, 2, MAX_ORDER)
        if check.is_concrete((a, U)):
            check_values(a, U, orthogonal)
        if factors is not None:
            factors = tuple(factors)
            if len(factors) != order:
                raise ValueError(f"factors must hold one (d, r) matrix per mode (order = {order}), "
                                 f"got {len(factors)}")
            if check.is_concrete(factors):
                for k, Uk in enumerate(factors):
                    try:
                        check_values(a, Uk)
                    except (TypeError, ValueError) as err:
                        raise type(err)(f"factors[{k}]: {err}") from None
                    if np.shape(Uk) != np.shape(U):
                        raise ValueError(f"factors[{k}] must have the shape of U, {np.shape(U)}, got {np.shape(Uk)}")
            factors = tuple(_floating(Uk) for Uk in factors)
        self.a = _floating(a)
        self.U = _floating(U)
        self.order = order
        self.orthogonal = bool(orthogonal)
        self.factors = factors

    # ------------------------------------------------------------------ constructors
    @classmethod
    def basis(cls, a: Any, d: int, order: int = 4) -> Target:
        """The paper's case: ``U = I[:, :r]``, i.e. ``T* = sum_i a_i e_i^{(x)p}`` in ``R^d``."""
        a_np = check.array("a", a, 1)
        d = check.integer("d", d, 1)
        if a_np.shape[0] > d:
            raise ValueError(f"d must be >= r = len(a) = {a_np.shape[0]} for U = I[:, :r], got d = {d}")
        r = a_np.shape[0]
        U = np.zeros((d, r))  # I[:, :r] without the d x d identity (d may be large)
        U[np.arange(r), np.arange(r)] = 1.0
        return cls(a_np.astype(np.float64), U, order, orthogonal=True)

    @classmethod
    def random_orthonormal(cls, key: jax.Array, a: Any, d: int, order: int = 4) -> Target:
        """``U`` uniformly (Haar) distributed among (d, r) matrices with orthonormal columns."""
        a_np = check.array("a", a, 1)
        d = check.integer("d", d, 1)
        r = a_np.shape[0]
        if r > d:
            raise ValueError(f"d must be >= r = len(a) = {r} for orthonormal U, got d = {d}")
        return cls(a_np.astype(np.float64), np.asarray(orthonormal_columns(key, d, r)), order, orthogonal=True)

    @classmethod
    def angle(cls, a: Any, d: int, angle: float, order: int = 4) -> Target:
        """Components at one pairwise angle (degrees): ``<u_i, u_j> = cos(angle)`` for ``i != j``,
        the non-orthogonal targets of paper Appendix E (``angle = 90`` is ``U = I[:, :r]``).

        ``U = I[:, :r] L^T`` with ``L L^T`` the Cholesky factor of the Gram matrix
        ``(1 - c) I + c 1 1^T``, ``c = cos(angle)``: for two components ``u_1 = e_1`` and
        ``u_2 = cos(angle) e_1 + sin(angle) e_2``. Needs ``-1/(r - 1) < cos(angle) < 1``.
        """
        a_np = check.array("a", a, 1)
        d = check.integer("d", d, 1)
        angle = check.real_scalar("angle", angle)
        r = a_np.shape[0]
        if r > d:
            raise ValueError(f"d must be >= r = len(a) = {r}, got d = {d}")
        c = math.cos(math.radians(angle))
        if not (0.0 < angle <= 180.0) or not (c < 1.0 and (r == 1 or c > -1.0 / (r - 1))):
            raise ValueError(f"angle must give a valid Gram matrix: 0 < angle <= 180 degrees with cos(angle) > "
                             f"-1/(r - 1) = {-1.0 / max(r - 1, 1):.3g} for r = {r} components, got angle = {angle!r}")
        return cls(a_np.astype(np.float64), np.asarray(equiangular_columns(d, r, c)), order, orthogonal=angle == 90.0)

    @classmethod
    def asymmetric(cls, a: Any, factors: Any) -> Target:
        """A general target ``T* = sum_i a_i u_i^(1) (x) ... (x) u_i^(p)``: one ``(d, r)`` matrix of
        unit columns per mode, ``p = len(factors) >= 2`` (at ``p = 2``, ``U_1 diag(a) U_2^T``).
        Fitted by the asymmetric model (:class:`deflation.models.Asymmetric`)."""
        factors = tuple(factors)
        if len(factors) < 2:
            raise ValueError(f"factors must hold at least 2 factor matrices (one per mode), got {len(factors)}")
        return cls(a, factors[0], len(factors), factors=factors)

    @classmethod
    def geometric(cls, d: int, r: int, ratio: float = 1.2, order: int = 4) -> Target:
        """Figure 1's target: ``U = I[:, :r]``, ``a_i / a_{i+1} = ratio``, ``sum_i a_i = 1``."""
        r = check.integer("r", r, 1)
        d = check.integer("d", d, 1)
        if r > d:
            raise ValueError(f"d must be >= r = {r} for U = I[:, :r], got d = {d}")
        ratio = check.real_scalar("ratio", ratio)
        if not (math.isfinite(ratio) and ratio >= 1):
            raise ValueError(f"ratio must be a finite number >= 1 (a_i / a_(i+1)), got {ratio!r}")
        a = ratio ** -np.arange(r, dtype=np.float64)
        return cls.basis(a / a.sum(), d, order)

    # ------------------------------------------------------------------ properties
    @property
    def d(self) -> int:
        """Ambient dimension."""
        return self.U.shape[-2]

    @property
    def r(self) -> int:
        """Number of ground-truth components."""
        return self.U.shape[-1]

    @property
    def batched(self) -> bool:
        """Whether this holds one target per seed (``a`` (B, r), ``U`` (B, d, r))."""
        return self.U.ndim == 3

    def norm(self) -> Float[Array, "*B"]:
        """``|T*|_F = sqrt(sum_ik a_i a_k <u_i, u_k>^p)`` (one per target of a batch)."""
        H = jnp.einsum("...di,...dk->...ik", self.U, self.U)
        sq = jnp.einsum("...i,...ik,...k->...", self.a, H**self.order, self.a)
        return jnp.sqrt(jnp.maximum(sq, 0.0))

    def dense(self, max_bytes: int = DENSE_MAX_BYTES) -> Float[Array, "..."]:  # noqa: UP037  (a jaxtyping shape, not a forward reference)
        """The d^p array of ``T*`` (for tests and notebooks at small d).

        Raises ``ValueError`` if it would take more than ``max_bytes``.
        """
        return dense_power_sum(self.U, self.a, self.order, max_bytes=max_bytes)


def check_values(a: Any, U: Any, orthogonal: bool = False) -> None:
    """Raise ``ValueError``/``TypeError`` unless concrete ``a`` (r,) and ``U`` (d, r) (or a batch
    (B, r) and (B, d, r), one target per seed) make a target: real and finite, ``a >= 0``, at least
    one weight, unit columns (orthonormal when ``orthogonal``)."""
    a_np = check.array("a", a, (1, 2))
    U_np = check.array("U", U, (2, 3))
    if a_np.ndim + 1 != U_np.ndim or a_np.shape[:-1] != U_np.shape[:-2]:
        raise ValueError(f"a and U must have 1 and 2 dimensions ((r,) and (d, r)), or 2 and 3 for a batch of "
                         f"targets ((B, r) and (B, d, r)); got shapes {a_np.shape} and {U_np.shape}")
    check.finite_array("a", a_np)
    check.finite_array("U", U_np)
    if (a_np < 0).any():
        idx = tuple(int(k) for k in np.argwhere(a_np < 0)[0])
        label = idx[0] if a_np.ndim == 1 else idx
        raise ValueError(f"a must be >= 0 (weights of T*), got a[{label}] = {float(a_np[idx])!r}")
    if a_np.shape[-1] != U_np.shape[-1]:
        raise ValueError(
            f"a has {a_np.shape[-1]} weights but U has {U_np.shape[-1]} columns "
            f"(U must be (d, r) with r = len(a))"
        )
    if a_np.shape[-1] < 1:
        raise ValueError("a must hold at least one weight, got an empty array")
    for b, Ub in enumerate(U_np.reshape((-1,) + U_np.shape[-2:])):
        where = "" if U_np.ndim == 2 else f" (target {b} of the batch)"
        norms = np.linalg.norm(Ub.astype(np.float64), axis=0)
        tol = 1e-6 if Ub.dtype == np.float32 else 1e-10
        bad = np.abs(norms - 1.0) > tol
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"U must have unit columns (|U[:, i]| = 1 within {tol:g}), "
                f"got |U[:, {i}]| = {norms[i]!r}{where}"
            )
        if orthogonal:
            gram = Ub.T @ Ub - np.eye(Ub.shape[1])
            worst = float(np.abs(gram).max())
            if worst > 10 * tol:
                i, k = (int(x) for x in np.unravel_index(np.argmax(np.abs(gram)), gram.shape))
                raise ValueError(
                    "U must have orthonormal columns when orthogonal=True, got "
                    f"<U[:, {i}], U[:, {k}]> - delta = {gram[i, k]!r}{where}"
                )


def _floating(x: Any) -> jax.Array:
    """``x`` as a JAX array, integers converted to the default float (float64)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def as_target(value: Any, name: str = "target") -> Target:
    """``value`` if it is a valid :class:`Target`, else ``TypeError``/``ValueError`` naming ``name``
    (the one check every public entry point uses).

    A concrete target's values are checked again here (:func:`check_values`): a ``Target`` built
    inside ``jit`` from traced values is not checked when it is built, and it may come out of the
    ``jit`` holding NaN or negative weights.
    """
    if not isinstance(value, Target):
        raise TypeError(f"{name} must be a deflation.Target, got {type(value).__name__}")
    if check.is_concrete((value.a, value.U)):
        try:
            check_values(value.a, value.U, value.orthogonal)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{name} is not a valid Target: {err}") from None
    return value
