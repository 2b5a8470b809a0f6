"""What a study runs on: the devices of its mesh, the default chunk size, and the memory a compiled
chunk needs against the memory the device has free."""

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


def format_bytes(n: float) -> str:
    """A byte count for people: ``1.50 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def available_bytes(device) -> int | None:
    """Memory free for a computation on ``device``: on an accelerator its allocator's limit minus
    what is in use; on the CPU the kernel's ``MemAvailable`` (Linux), else the physical memory.
    None when it cannot be told."""
    if getattr(device, "platform", "cpu") != "cpu":
        try:
            stats = device.memory_stats() or {}
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        except (AttributeError, KeyError, TypeError, RuntimeError):
            return None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


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


