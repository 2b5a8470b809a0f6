"""``plan_study``: how big a study is, how much memory a chunk needs and how long the study will
take on this machine, before anything is computed.

The memory need comes from the compiled program itself (XLA's memory analysis of the chunk
function: arguments, outputs and temporaries), the time from a short calibration: one small
chunk of each distinct compiled program is run and timed, and the time per seed is scaled to the
study's seeds and grid points. Both are estimates, and said to be.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..memory import available_memory, gib
from .kernel import Static
from .resources import DEFAULT_CHUNK, check_fits, chunk_memory, compiled_bytes, dataset_bytes, select_devices
from .study import Study
from .workers import format_duration

#: Seeds per device in a calibration run.
CALIBRATION_SEEDS = 8


@dataclass
class Program:
    """One distinct compiled program of a study and what its calibration measured."""

    static: Static
    points: int
    seeds: int
    compile_s: float = float("nan")
    seconds_per_seed: float = float("nan")
    chunk_bytes: int | None = None


@dataclass
class Plan:
    """What :func:`plan_study` found.

    Attributes:
        study: the study.
        points: grid points; runs: grid points x seeds; chunk: seeds per chunk; chunks: in all.
        programs: the distinct compiled programs (grid points that share shapes share one).
        available: memory free on the device (bytes), or None.
        dataset_bytes: the dataset's size in memory (:func:`~deflation.montecarlo.resources.dataset_bytes`).
        estimate_bytes: the largest estimate of a chunk's memory from the sizes alone, before
            compiling (:func:`~deflation.montecarlo.resources.chunk_memory`).
        chunk_bytes: the largest memory need of a chunk over the programs (bytes), or None.
        seconds: estimated wall time of the whole study (compilation included), or NaN without
            calibration.
    """

    study: Study
    points: int
    runs: int
    chunk: int
    chunks: int
    devices: int
    programs: list[Program] = field(default_factory=list)
    available: int | None = None
    chunk_bytes: int | None = None
    seconds: float = float("nan")
    dataset_bytes: int = 0
    estimate_bytes: int = 0

    @property
    def fits(self) -> bool:
        return self.chunk_bytes is None or self.available is None or self.chunk_bytes <= self.available

    def describe(self) -> str:
        """A few lines for the command line."""
        s = self.study
        grid = " x ".join(f"{k} ({len(v)})" for k, v in s.grid) or "one point"
        lines = [
            f"experiment {s.experiment}: grid {grid} = {self.points} point(s) x {s.seeds} seeds = {self.runs} runs",
            f"chunks: {self.chunks} of {self.chunk} seeds on {self.devices} device(s); "
            f"{len(self.programs)} compiled program(s)",
        ]
        lines.append(f"memory: the dataset takes {gib(self.dataset_bytes)} (read whole by open_study); a chunk an "
                     f"estimated {gib(self.estimate_bytes)} per device before compiling")
        if self.chunk_bytes is not None:
            have = "unknown" if self.available is None else gib(self.available)
            lines.append(f"memory: about {gib(self.chunk_bytes)} per chunk; {have} available"
                         + ("" if self.fits else "  -> does NOT fit"))
        if np.isfinite(self.seconds):
            per = ", ".join(f"{p.seconds_per_seed * 1e3:.3g} ms/seed (compile {p.compile_s:.1f} s)"
                            for p in self.programs)
            lines.append(f"estimated time on this machine: {format_duration(self.seconds)} (calibration: {per})")
        else:
            lines.append(f"memory and time: not measured (a calibration compiles each of the {len(self.programs)} "
                         f"program(s) and runs one small chunk of it: deflation study plan --calibrate)")
        return "\n".join(lines)


def plan_study(study: Study, *, chunk: int | None = None, devices: int | None = None, calibrate: bool = True) -> Plan:
    """The size, memory and estimated time of a study, from a short calibration (nothing is stored).

    Each distinct compiled program is compiled for a small chunk (:data:`~deflation.montecarlo.plan.CALIBRATION_SEEDS`
    seeds per device) and run once on it at its first grid point; its memory need is scaled linearly to
    the study's chunk and its time per seed to the study's seeds.

    Raises:
        ValueError: before anything is compiled, when the dataset or a chunk's estimate does not
            fit in memory (:func:`~deflation.montecarlo.resources.check_fits`); after the
            calibration, when a compiled chunk would need more memory than the device has free
            (with both numbers and what to change).
    """
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from .program import compile_chunk, static_key, traced_params

    if not isinstance(study, Study):
        raise TypeError(f"study must be a deflation.montecarlo.Study, got {type(study).__name__}")
    mesh_devices = select_devices(devices)
    ndev = len(mesh_devices)
    chunk = min(chunk or study.chunk or DEFAULT_CHUNK, study.seeds)
    padded = -(-chunk // ndev) * ndev
    points = study.points()
    n_chunks = -(-study.seeds // chunk)
    check_fits(study, mesh_devices, chunk)  # too large for memory: refused before anything is compiled
    plan = Plan(study=study, points=len(points), runs=len(points) * study.seeds, chunk=chunk,
                chunks=len(points) * n_chunks, devices=ndev, available=available_memory(mesh_devices[0]))
    groups: dict = {}
    for point in points:
        groups.setdefault(static_key(study, point), []).append(point)
    for static, members in groups.items():
        plan.programs.append(Program(static=static, points=len(members), seeds=len(members) * study.seeds))
    plan.dataset_bytes = dataset_bytes(study)
    plan.estimate_bytes = max(chunk_memory(study, members[0], padded // ndev, mesh_devices[0].platform).total
                              for members in groups.values())
    if not calibrate:
        return plan
    mesh = Mesh(np.array(mesh_devices), ("seed",))
    sharding, replicated = NamedSharding(mesh, P("seed")), NamedSharding(mesh, P())
    n_cal = min(padded, CALIBRATION_SEEDS * ndev)
    total = 0.0
    for program, members in zip(plan.programs, groups.values()):
        params = {k: jax.make_array_from_callback(v.shape, replicated, v.__getitem__)
                  for k, v in traced_params(study, members[0]).items()}
        idx = np.arange(n_cal, dtype=np.uint32)
        x = jax.make_array_from_callback((n_cal,), sharding, lambda s: idx[s])
        t = time.perf_counter()
        compiled = compile_chunk(program.static, mesh).lower(x, params).compile()
        program.compile_s = time.perf_counter() - t
        small = compiled_bytes(compiled)
        program.chunk_bytes = None if small is None else int(small * padded / n_cal)
        t = time.perf_counter()
        jax.block_until_ready(compiled(x, params))
        program.seconds_per_seed = (time.perf_counter() - t) / n_cal
        total += program.compile_s + program.seconds_per_seed * program.seeds
    plan.seconds = total
    sizes = [p.chunk_bytes for p in plan.programs if p.chunk_bytes is not None]
    plan.chunk_bytes = max(sizes) if sizes else None
    if not plan.fits and plan.chunk_bytes is not None and plan.available is not None:
        raise ValueError(
            f"the study is too large for memory: a chunk of {padded} seeds needs about "
            f"{gib(plan.chunk_bytes)} but {gib(plan.available)} is available; use a smaller chunk "
            "(chunk = ... in the study file or --chunk), a smaller m, or fewer series points"
        )
    return plan
