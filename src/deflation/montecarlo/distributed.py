"""Joining a multi-process ``jax.distributed`` job (JAX's own runtime; no home-made scheduler).

Call :func:`initialize` once per process, before anything else uses JAX; then every process
runs the same :func:`deflation.montecarlo.run_study`: the seed axis is sharded over the devices
of all processes, each process computes its share and process 0 writes the dataset.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

from .. import _validate as check


class CoordinatorUnreachable(ValueError):
    """The coordinator of a multi-process job could not be reached within the timeout."""


def parse_address(address: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> ``(host, port)``, checked."""
    if not isinstance(address, str) or ":" not in address:
        raise ValueError(f"coordinator must be 'HOST:PORT', got {address!r}")
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"coordinator must be 'HOST:PORT' with a port in 1..65535, got {address!r}")
    return host, int(port)


def wait_reachable(host: str, port: int, timeout: float) -> None:
    """Poll a TCP connection to ``host:port`` until it succeeds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, max(0.1, deadline - time.monotonic()))):
                return
        except OSError as err:
            last = err
        if time.monotonic() >= deadline:
            raise CoordinatorUnreachable(
                f"coordinator {host}:{port} not reachable within {timeout:g} s ({last}); start process 0 "
                "(--process-id 0) first, check the address and port, or raise --init-timeout"
            )
        time.sleep(0.2)


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, timeout: float = 60.0) -> None:
    """Join (or, for process 0, host) a ``jax.distributed`` job, with CPU collectives over gloo.

    With ``coordinator=None`` JAX's cluster auto-detection is used (``JAX_COORDINATOR_ADDRESS``,
    SLURM, Open MPI, Kubernetes, ...). A process other than 0 first checks that the coordinator
    accepts connections, so an unreachable coordinator gives :class:`CoordinatorUnreachable`
    after ``timeout`` seconds instead of a hang or an abort inside the runtime.

    The join itself is watched: if it has not completed ``timeout`` seconds after it started (for
    process 0: a peer never came), the process prints one line on stderr and exits with status 2.
    It cannot carry on instead: JAX's runtime would abort it from inside (a C++ check failure,
    after about a minute, whatever the timeout).

    Raises:
        ValueError: a malformed address, ``num_processes < 1``, ``process_id`` outside
            ``[0, num_processes)``, or the coordinator's port is already taken (process 0).
        CoordinatorUnreachable: see above.
    """
    import jax

    timeout = check.positive("timeout", timeout)
    if coordinator is not None:
        host, port = parse_address(coordinator)
        if num_processes is None or process_id is None:
            raise ValueError("a coordinator needs num_processes and process_id (--num-processes, --process-id)")
        num_processes = check.integer("num_processes", num_processes, 1)
        process_id = check.integer("process_id", process_id, 0)
        if process_id >= num_processes:
            raise ValueError(f"process_id must be in [0, num_processes) = [0, {num_processes}), got {process_id}")
        if process_id == 0:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("", port))
                except OSError as err:
                    raise ValueError(f"process 0 cannot host the coordinator on port {port}: {err}") from None
        else:
            wait_reachable(host, port, timeout)
    elif num_processes is not None or process_id is not None:
        raise ValueError("num_processes / process_id need a coordinator address (--coordinator HOST:PORT)")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    _join_within(timeout, lambda: jax.distributed.initialize(coordinator, num_processes, process_id,
                                                             initialization_timeout=max(1, int(timeout))),
                 "process 0 waited for its peers" if process_id == 0 else "joining the job")


def _join_within(timeout: float, join, what: str) -> None:
    """Run ``join`` in a thread; re-raise what it raises; if it has not returned after ``timeout``
    seconds (plus a short grace), print one line and exit the process with status 2."""
    box: dict = {}

    def target():
        try:
            join()
        except BaseException as err:  # noqa: BLE001 - handed to the calling thread
            box["error"] = err
        box["done"] = True

    thread = threading.Thread(target=target, name="deflation-jax-distributed-join", daemon=True)
    thread.start()
    thread.join(timeout + min(5.0, 0.2 * timeout))
    if "done" not in box:
        print(f"deflation: error: the jax.distributed job did not form within {timeout:g} s ({what}): "
              "start every process "
              "(--num-processes of them) with the same --coordinator, or raise --init-timeout", file=sys.stderr,
              flush=True)
        os._exit(2)
    if "error" in box:
        raise box["error"]
