"""Timing, device and output helpers shared by the benchmark scripts of this folder.

Every figure is a ratio measured side by side in one run (the best of several repeats), written
to a JSON file with the device it ran on. Results go to ``benchmarks/out/`` (ignored by git) unless
``--record`` asks for the committed ``benchmarks/results/``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

#: The committed results (written only with ``--record``) and the default, git-ignored output folder.
RESULTS = Path(__file__).resolve().parent / "results"
OUT = Path(__file__).resolve().parent / "out"


def output_path(name: str, record: bool, out: Path | None = None) -> Path:
    """Where a results file goes: ``out`` if given, else ``results/name`` with ``record``, else ``out/name``."""
    if out is not None:
        return Path(out)
    return (RESULTS if record else OUT) / name


def add_output_arguments(p) -> None:
    """``--out`` and ``--record`` for a benchmark's argument parser."""
    p.add_argument("--out", type=Path, default=None,
                   help="results JSON path (default: benchmarks/out/..., ignored by git)")
    p.add_argument("--record", action="store_true",
                   help="write the committed results in benchmarks/results/ instead of benchmarks/out/")


def best_time(fn, repeats: int = 5, min_total: float = 0.0) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` (results blocked on); keeps going until
    ``min_total`` seconds have been spent."""
    times, spent = [], 0.0
    while len(times) < repeats or spent < min_total:
        t = time.perf_counter()
        jax.block_until_ready(fn())
        dt = time.perf_counter() - t
        times.append(dt)
        spent += dt
        if len(times) > 1000:
            break
    return min(times)


def host_cpu() -> dict:
    """The host CPU's model and widest x86 vector ISA (``avx512f``, ``avx2``, ``avx``, ``sse``) or
    the machine name elsewhere, from ``/proc/cpuinfo`` where there is one."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        if key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    isa = next((f for f in ("avx512f", "avx2", "avx", "sse4_2", "asimd", "neon") if f in flags), platform.machine())
    return {"cpu_model": model, "cpu_isa": isa, "xla_flags": os.environ.get("XLA_FLAGS", "")}


def device_info() -> dict:
    """The device, the host CPU (model and vector ISA: :func:`host_cpu`) and the versions, recorded
    beside every figure."""
    import jaxlib

    dev = jax.devices()[0]
    return host_cpu() | {
        "platform": dev.platform,
        "device_kind": getattr(dev, "device_kind", str(dev)),
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def tag() -> str:
    """``cpu`` or the GPU kind (spaces replaced), used to name results files."""
    dev = jax.devices()[0]
    return "cpu" if dev.platform == "cpu" else str(getattr(dev, "device_kind", dev.platform)).replace(" ", "-").lower()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux ``ru_maxrss`` is in KiB)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def write_json(path: Path, data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(x):
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, (np.floating, float)):
            x = float(x)
            return x if np.isfinite(x) else str(x)
        if isinstance(x, (np.integer,)):
            return int(x)
        if isinstance(x, np.ndarray):
            return clean(x.tolist())
        return x

    path.write_text(json.dumps(clean(data), indent=1) + "\n")
    return path


def matmul_rate(n: int = 1024, dtype=np.float64, repeats: int = 5) -> float:
    """flop/s of one ``n x n`` by ``n x n`` matrix product on the default device (2 n^3 flops)."""
    import jax.numpy as jnp

    A = jnp.asarray(np.random.default_rng(0).random((n, n)), dtype)
    f = jax.jit(lambda A: A @ A)
    f(A).block_until_ready()
    return 2 * n**3 / best_time(lambda: f(A), repeats)
