"""Peak memory of a compiled solve, estimated before compiling, and the memory there is.

A call that cannot fit used to compile for tens of seconds and then die inside XLA
(``RESOURCE_EXHAUSTED``: ``gradient_flow`` with m = 100,000 at d = 10 asked for 162 GB, and for
48 TB with 601 save points, whose losses were all evaluated at once). The
functions here count, from the sizes alone, the arrays a compiled call keeps alive at its peak, so
that the callers can refuse such a call at once, or split it, before anything is traced:

- :func:`flow_memory`: :func:`deflation.gradient_flow`;
- :func:`algorithm2_memory`: :func:`deflation.modified_gradient_flow`;
- :func:`available_memory`: what the device can still hold (:func:`host_memory`: the host);
- :func:`require_fits`: the ``ValueError`` naming the estimate, the memory available and what to
  change.

What takes memory, per seed being solved (``m`` columns in ``d`` dimensions, ``r`` components,
``K`` save points, ``P`` event-grid points, ``s`` bytes per float):

- the vector field: its Gram matrices ``Xbar^T Xbar`` and their powers, a few ``m x m`` arrays per
  seed (for all the seeds of a chunk at once, except on CPU for large seeds, which go one at a
  time: :func:`deflation.contract.sequential`);
- the double-double loss (:func:`deflation.contract.residual_norm_sq_precise`), about ten ``m x m``
  arrays per saved state (one for the float route), which ``gradient_flow`` evaluates a block of
  saved states at a time (:func:`series_block`, at most :data:`SERIES_BLOCK_BYTES`, and at most as
  many states as seeds per chunk, so that on CPU a block stays in cache);
- the event grid: about twenty length-``m`` arrays per event point (:mod:`deflation.definition1`);
- the save buffers and results: ``gradient_flow``'s ``B x K x (d + 1) x m`` saved states are
  held once (every chunk solves into its rows of the returned arrays, and ``W`` overwrites the
  saved directions in place), its loss series twice (per chunk, then concatenated); Algorithm 2's
  end states a few times (:data:`SAVE_COPIES`).

The constants were fitted to XLA's own count of the compiled calls (``memory_analysis()``) on CPU
at sizes up to m = 2000 and are checked against it in ``tests/test_robustness.py``: the estimate
is an upper bound, by a factor 1.3 to 3 where memory matters (more at tiny sizes, where the fixed
:data:`OVERHEAD` dominates). Accelerators compile differently; the estimate is a guide there, not
a guarantee. :func:`deflation.flow.flow_plan` and :func:`deflation.algorithm.algorithm2_plan`
apply it.
"""

from __future__ import annotations

import os
from typing import Any

import equinox as eqx
import jax

from .contract import precise_by_default, sequential

#: Arrays of ``m x m`` floats alive per seed while the vector field is evaluated.
FIELD_SQUARES = 3
#: Arrays of ``m x m`` floats per saved state in the double-double loss, and in the float one.
LOSS_SQUARES_PRECISE, LOSS_SQUARES_FLOAT = 12, 2
#: Length-``m`` arrays per seed and event-grid point (Definition 1's quantities and their roots).
EVENT_COLUMNS = 24
#: Copies of a seed's end state ``(d + 1) x m`` alive at the peak of Algorithm 2's phases.
SAVE_COPIES = 4
#: Copies of a state ``(d + 1) x m`` per seed in the Runge-Kutta loop (stages, error, dense output).
STEP_COPIES = 24
#: Fixed overhead of a compiled call (XLA's own buffers).
OVERHEAD = 2**24
#: The loss series is evaluated in blocks of saved states of at most this many bytes (a block of
#: one state if a single one is larger).
SERIES_BLOCK_BYTES = 2**30


class MemoryEstimate(eqx.Module):
    """An estimate of the peak memory of one compiled call.

    Attributes:
        total: bytes at the peak (the sum of ``parts``).
        parts: bytes by what takes them (``"vector field"``, ``"loss"``, ``"events"``, ``"states"``, ...).
        chunk: seeds solved at once.
        block: saved states whose loss is evaluated at once.
        precise: whether the loss is the double-double one.
    """

    total: int
    parts: dict
    chunk: int
    block: int
    precise: bool

    def describe(self) -> str:
        """``"12.3 GiB (vector field 10.1 GiB, loss ...)"``: the total and its largest parts."""
        parts = sorted(self.parts.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{name} {gib(value)}" for name, value in parts if value >= 0.05 * self.total)
        return f"{gib(self.total)} ({shown})"


def gib(n: float) -> str:
    """Bytes as a short human-readable size: ``1000 B``, ``3.5 MiB``, ``1.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"


def series_block(d: int, m: int, r: int, precise: bool, itemsize: int, states: int) -> int:
    """Saved states whose loss and residual are evaluated at once (out of ``states``), so that one
    block takes at most :data:`SERIES_BLOCK_BYTES` (at least one state)."""
    per_state = _loss_per_state(d, m, r, precise, itemsize)
    return int(max(1, min(states, SERIES_BLOCK_BYTES // per_state)))


def _loss_per_state(d: int, m: int, r: int, precise: bool, itemsize: int) -> int:
    squares = LOSS_SQUARES_PRECISE if precise else LOSS_SQUARES_FLOAT
    return itemsize * (squares * m * m + 8 * (d + r) * m + 4 * m * r)


def flow_memory(*, seeds: int, d: int, m: int, r: int, save_points: int, event_points: int,
                precise: bool | None = None, itemsize: int = 8, chunk: int,
                backend: str | None = None) -> MemoryEstimate:
    """Estimated peak memory of :func:`deflation.gradient_flow` with ``seeds`` initializations of
    ``m`` columns in ``d`` dimensions against ``r`` components, ``save_points`` save times and
    ``event_points`` event-grid points, ``chunk`` seeds solved at once (see the module docstring).

    ``precise``: the double-double loss (None: :func:`deflation.contract.precise_by_default`).
    """
    precise, B, c, state, field_seeds = _sizes(seeds, d, m, r, precise, chunk, backend)
    K, P, s = int(save_points), int(event_points), int(itemsize)
    # at most one chunk's worth of states at once: on CPU the block's Gram matrices then stay in
    # cache, as the solve's do (a block of 11,000 Figure 1 states ran the series 1.5x slower)
    block = min(series_block(d, m, r, precise, s, c * K), c)
    parts = {
        "vector field": s * FIELD_SQUARES * m * m * field_seeds + s * STEP_COPIES * state * c,
        "loss": block * _loss_per_state(d, m, r, precise, s),
        "events": s * EVENT_COLUMNS * m * P * c,
        "states": s * K * (state + 2 * (r + 2)) * B,  # W and log_norm once; loss, floor, residual twice
        "target": s * 2 * d * r,
        "overhead": OVERHEAD,
    }
    return MemoryEstimate(total=int(sum(parts.values())), parts=parts, chunk=c, block=block, precise=bool(precise))


def _sizes(seeds, d: int, m: int, r: int, precise: bool | None, chunk, backend: str | None):
    """What both estimates start from: the loss route, the batch ``B``, the seeds per chunk, the
    floats of one state and the seeds whose vector field is evaluated at once."""
    if precise is None:
        precise = precise_by_default(d, m, r)
    backend = jax.default_backend() if backend is None else backend
    B = int(seeds)
    c = max(1, min(int(chunk), B))
    return precise, B, c, (d + 1) * m, 1 if sequential(d, m, backend) else c


def algorithm2_memory(*, seeds: int, d: int, m: int, r: int, grid_points: int, max_epochs: int,
                      precise: bool | None = None, itemsize: int = 8, chunk: int,
                      backend: str | None = None) -> MemoryEstimate:
    """Estimated peak memory of :func:`deflation.modified_gradient_flow` with ``seeds`` runs of
    ``m`` columns, ``grid_points`` event points per phase and ``max_epochs`` epochs, ``chunk``
    seeds solved at once. Every seed's event quantities of a phase and its per-epoch record are
    kept for the whole batch."""
    precise, B, c, state, field_seeds = _sizes(seeds, d, m, r, precise, chunk, backend)
    P, E, s = int(grid_points), int(max_epochs), int(itemsize)
    parts = {
        # the event quantities carry |T - T*|_F (one more Gram product) in Algorithm 2
        "vector field": s * (FIELD_SQUARES + 2) * m * m * field_seeds + s * STEP_COPIES * state * c,
        "loss": s * (LOSS_SQUARES_PRECISE if precise else LOSS_SQUARES_FLOAT) * m * m * B,
        "events": s * EVENT_COLUMNS * m * P * B * 2,
        "states": s * SAVE_COPIES * state * B * 2,
        "record": s * 3 * E * B * (2 * P * (r + 2) + 30 * r),
        "target": s * 2 * d * r,
        "overhead": OVERHEAD,
    }
    return MemoryEstimate(total=int(sum(parts.values())), parts=parts, chunk=c, block=1, precise=bool(precise))


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """What a cgroup (v2 or v1) memory limit still allows, if there is one."""
    for limit_path, usage_path in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_path) as fh:
                text = fh.read().strip()
            if text == "max":
                continue
            limit = int(text)
            with open(usage_path) as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if limit < 2**60:  # v1 reports "no limit" as a huge number
            return max(0, limit - usage)
    return None


def available_memory(device: Any = None) -> int | None:
    """Bytes the device can still allocate, or None when unknown.

    On an accelerator: ``bytes_limit - bytes_in_use`` of ``device.memory_stats()`` (default: the
    first device). On CPU: ``MemAvailable`` of ``/proc/meminfo`` (else the physical memory,
    ``os.sysconf('SC_PHYS_PAGES') * SC_PAGE_SIZE``), and less if a cgroup limit allows less.
    """
    device = jax.devices()[0] if device is None else device
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
        except Exception:  # noqa: BLE001 - a backend without memory statistics
            stats = {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return None
    return host_memory()


def host_memory() -> int | None:
    """Bytes the host (CPU) memory can still allocate, or None when unknown: ``MemAvailable`` of
    ``/proc/meminfo`` (else the physical memory), and less if a cgroup limit allows less. What
    :func:`available_memory` gives for a CPU device, also where JAX runs on an accelerator only."""
    found = _meminfo_available()
    if found is None:
        try:
            found = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            found = None
    limit = _cgroup_available()
    if limit is not None:
        found = limit if found is None else min(found, limit)
    return found


def fit_chunk(estimate_for, chunk: int, available: int | None) -> MemoryEstimate:
    """The estimate with the largest number of seeds per chunk, at most ``chunk``, that fits in
    ``available`` bytes (halving; seeds are independent, so the chunk never changes a result);
    with ``chunk = 1`` if none fits. ``estimate_for(chunk)`` gives the estimate of a chunk size."""
    est = estimate_for(chunk)
    while available is not None and est.total > available and chunk > 1:
        chunk = max(1, chunk // 2)
        est = estimate_for(chunk)
    return est


def require_fits(estimate: MemoryEstimate, available: int | None, what: str, advice: str) -> None:
    """``ValueError`` when ``estimate`` exceeds ``available`` bytes (None: unknown, no check), with
    the estimate, the memory available and ``advice`` (what to change, in the caller's words)."""
    if available is None or estimate.total <= available:
        return
    raise ValueError(
        f"{what} needs an estimated {estimate.describe()} of memory at its peak, but only {gib(available)} is "
        f"available: {advice}"
    )


def suggest(estimate: MemoryEstimate, names: dict[str, str]) -> str:
    """What to change, for the parts of ``estimate`` that take at least a tenth of it, largest
    first, in the caller's names: keys ``seeds``, ``m``, and where the caller has them ``d``,
    ``save_points``, ``event_points``, ``max_epochs``, ``precise`` (how to ask for the float loss),
    ``fewer_seeds`` (how to ask for fewer seeds per call)."""
    m = names["m"]
    more = lambda key: f" or fewer {names[key]}" if key in names else ""  # noqa: E731
    actions = {
        "vector field": f"a smaller {m} (each seed's vector field holds m x m Gram matrices)",
        "loss": (f"{names['precise']} or a smaller {m}" if estimate.precise and "precise" in names
                 else f"a smaller {m} (the loss of each saved state holds an m x m Gram matrix)"),
        "events": f"fewer {names.get('event_points', 'event points')} or a smaller {m}",
        "states": names.get("fewer_seeds", f"fewer {names['seeds']} per call") + more("save_points"),
        "record": names.get("fewer_seeds", f"fewer {names['seeds']} per call") + more("max_epochs"),
        "target": f"a smaller {names.get('d', 'd')} or fewer components",
    }
    out: list[str] = []
    for name, size in sorted(estimate.parts.items(), key=lambda kv: -kv[1]):
        action = actions.get(name)
        if action is None or (out and size < 0.1 * estimate.total):
            continue
        if not any(action.split(" (")[0] == seen.split(" (")[0] for seen in out):
            out.append(action)
    return "use " + "; or ".join(out)
