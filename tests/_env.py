"""The environment of a subprocess that runs on the CPU with ``devices`` forced host devices."""

import os


def cpu_env(devices: int | None = None) -> dict:
    """``os.environ`` with ``JAX_PLATFORMS=cpu`` and, if ``devices``, that many forced host devices."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env
