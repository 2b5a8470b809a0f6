"""The environment of a subprocess that runs on the CPU with ``devices`` forced host devices."""

import os


def cpu_env(devices: int | None = None) -> dict:
    """``os.environ`` with ``JAX_PLATFORMS=cpu`` and, if ``devices``, that many forced host devices.

    Other XLA flags are kept: ``--xla_cpu_max_isa=AVX2`` (an older CPU emulated) must reach the
    subprocess too, or its programs use another instruction set and differ from this process's in
    the last bits."""
    env = dict(os.environ)
    flags = [f for f in env.pop("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    if devices:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    env["JAX_PLATFORMS"] = "cpu"
    return env
