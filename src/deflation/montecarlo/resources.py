"""What a study runs on: the devices of its mesh, the default chunk size, and the memory a compiled
chunk needs (the memory the device has free is :func:`deflation.memory.available_memory`)."""

from __future__ import annotations

from .. import _validate as check

#: Default number of seeds per chunk (a Zarr chunk and one compiled call).
DEFAULT_CHUNK = 512


def select_devices(devices: int | None):
    """Devices of the 1-D mesh: all of them, or the first ``devices`` of every process."""
    import jax

    local = jax.local_devices()
    if devices is None:
        return list(jax.devices())
    devices = check.integer("devices", devices, 1)
    if devices > len(local):
        raise ValueError(f"devices must be <= the {len(local)} device(s) JAX sees in this process ({local[0].platform}), got {devices}")
    by_proc: dict[int, list] = {}
    for d in jax.devices():
        by_proc.setdefault(d.process_index, []).append(d)
    return [d for p in sorted(by_proc) for d in by_proc[p][:devices]]


def compiled_bytes(compiled) -> int | None:
    """Peak memory of a compiled program (arguments + outputs + temporaries, XLA's analysis)."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None
    if stats is None:
        return None
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
               + getattr(stats, "generated_code_size_in_bytes", 0))


