"""Double-double ("dd") arithmetic on JAX arrays: a value is an unevaluated sum ``hi + lo``.

Used only where the loss and the residual must stay accurate after catastrophic cancellation
(``|T - T*|^2`` is a difference of O(1) terms that can be 1e-20 or smaller). The error-free
transformations are Knuth's TwoSum and Dekker's TwoProduct (T. J. Dekker, "A floating-point
technique for extending the available precision", Numer. Math. 18, 1971); the compound operations
follow D. H. Bailey's QD library. With float64 the unit roundoff is about 2^-104 ~ 5e-32.

These rely on IEEE round-to-nearest arithmetic evaluated as written; XLA on CPU does not
reassociate floating-point operations (fast-math is off by default).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

DD = tuple[jax.Array, jax.Array]


def _splitter(dtype) -> float:
    return 134217729.0 if jnp.finfo(dtype).nmant == 52 else 4097.0  # 2^27 + 1 or 2^12 + 1


def two_sum(a, b) -> DD:
    """``a + b = s + e`` exactly (Knuth)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def quick_two_sum(a, b) -> DD:
    """``a + b = s + e`` exactly, assuming ``|a| >= |b|``."""
    s = a + b
    e = b - (s - a)
    return s, e


def split(a) -> DD:
    """Dekker's split of ``a`` into two halves with non-overlapping mantissas."""
    c = _splitter(a.dtype) * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a, b) -> DD:
    """``a * b = p + e`` exactly (Dekker)."""
    b = jnp.asarray(b, a.dtype)
    p = a * b
    ah, al = split(a)
    bh, bl = split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def from_float(a) -> DD:
    a = jnp.asarray(a)
    return a, jnp.zeros_like(a)


def add(x: DD, y: DD) -> DD:
    """Accurate dd + dd."""
    s1, s2 = two_sum(x[0], y[0])
    t1, t2 = two_sum(x[1], y[1])
    s2 = s2 + t1
    s1, s2 = quick_two_sum(s1, s2)
    s2 = s2 + t2
    return quick_two_sum(s1, s2)


def neg(x: DD) -> DD:
    return -x[0], -x[1]


def mul(x: DD, y: DD) -> DD:
    """dd * dd."""
    p, e = two_prod(x[0], y[0])
    e = e + (x[0] * y[1] + x[1] * y[0])
    return quick_two_sum(p, e)


def mul_f(x: DD, b) -> DD:
    """dd * float."""
    p, e = two_prod(x[0], b)
    e = e + x[1] * b
    return quick_two_sum(p, e)


def div(x: DD, y: DD) -> DD:
    """dd / dd (two Newton corrections of the float quotient)."""
    q1 = x[0] / y[0]
    r = add(x, neg(mul_f(y, q1)))
    q2 = r[0] / y[0]
    r = add(r, neg(mul_f(y, q2)))
    q3 = r[0] / y[0]
    q1, q2 = quick_two_sum(q1, q2)
    return add((q1, q2), from_float(q3))


def sqrt(x: DD) -> DD:
    """Square root of a non-negative dd (one Newton step on the float root)."""
    s = jnp.sqrt(jnp.maximum(x[0], 0.0))
    safe = jnp.where(s > 0, s, 1.0)
    corr = add(x, neg(two_prod(s, s)))
    return quick_two_sum(s, jnp.where(s > 0, corr[0] / (2.0 * safe), 0.0))


def power(x: DD, p: int) -> DD:
    """``x ** p`` for a static integer ``p >= 1`` (binary powering)."""
    if p < 1:
        raise ValueError(f"power needs a static integer p >= 1, got p = {p!r}")
    result: DD | None = None
    base = x
    while p:
        if p & 1:
            result = base if result is None else mul(result, base)
        p >>= 1
        if p:
            base = mul(base, base)
    assert result is not None  # p >= 1 has a set bit
    return result


def sum(x: DD, axis: int = -1) -> DD:  # noqa: A001 - mirrors jnp.sum
    """Sum along ``axis`` by pairwise dd additions (log2(n) levels)."""
    hi = jnp.moveaxis(x[0], axis, 0)
    lo = jnp.moveaxis(x[1], axis, 0)
    if hi.shape[0] == 0:
        return jnp.zeros(hi.shape[1:], hi.dtype), jnp.zeros(hi.shape[1:], hi.dtype)
    while hi.shape[0] > 1:
        if hi.shape[0] % 2:
            pad = [(0, 1)] + [(0, 0)] * (hi.ndim - 1)
            hi, lo = jnp.pad(hi, pad), jnp.pad(lo, pad)
        hi, lo = add((hi[0::2], lo[0::2]), (hi[1::2], lo[1::2]))
    return hi[0], lo[0]


def matmul_tn(A, B) -> DD:
    """``A^T B`` in dd for float matrices ``A`` (d, m) and ``B`` (d, k), O(m k) memory."""

    def body(acc, rows):
        a, b = rows
        return add(acc, two_prod(a[:, None], b[None, :])), None

    zeros = jnp.zeros((A.shape[1], B.shape[1]), jnp.result_type(A, B))
    acc, _ = jax.lax.scan(body, (zeros, zeros), (A, B))
    return acc


def to_float(x: DD) -> jax.Array:
    return x[0] + x[1]
