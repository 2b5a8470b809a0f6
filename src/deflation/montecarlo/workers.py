"""Independent workers on one study store: who computes which chunk, without a coordinator.

Worker ``K`` of ``N`` (``run_study(..., worker=K, workers=N)``, ``deflation study run --worker K
--workers N``) first takes its share of the chunks still to compute (chunk ``(point j, chunk c)``
goes to worker ``(j * chunks_per_point + c) mod N``), then any other chunk that nobody holds. Before
it computes a chunk it *claims* it: it creates ``<store>/.claims/<j>.<c>`` with
``os.open(O_CREAT | O_EXCL)`` (atomic: of two workers only one succeeds), holding its worker id,
host, process id and the time. While it computes, a heartbeat thread refreshes the claim's
modification time; when the chunk is written (data first, digest last, see
:mod:`deflation.montecarlo.store`) the claim is marked done with the time it took. A claim whose
worker died stops being refreshed; once it is older than the stale-claim timeout (or at once, when
it was made on the same host by a process that no longer exists) another worker takes the chunk
over (renaming the stale claim away, an atomic step, then claiming it anew). A chunk's data is only
ever written by the worker that holds its claim, and each chunk is its own set of Zarr chunk files,
so no two workers write the same file; even a worker that lost its claim while suspended would
write identical bytes (atomically, file by file), and every chunk is verified against its digest
before it is trusted.

:func:`~deflation.montecarlo.workers.status` reads the claims and the digests: chunks done,
claimed, missing and damaged, per worker, and an estimate of the time left.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The folder of claim files inside a store.
CLAIMS = ".claims"
#: Default stale-claim timeout (seconds): a claim not refreshed for this long is taken over.
DEFAULT_CLAIM_TIMEOUT = 600.0


def check_worker(worker, workers) -> tuple[int, int]:
    """``(worker, workers)`` checked: ``workers >= 1`` and ``0 <= worker < workers``."""
    from .. import _validate as check

    workers = check.integer("workers", workers, 1)
    worker = check.integer("worker", worker, 0)
    if worker >= workers:
        raise ValueError(f"worker must be in [0, workers) = [0, {workers}), got worker = {worker}")
    return worker, workers


def share(todo: list[tuple[int, int]], chunks_per_point: int, worker: int, workers: int) -> list[tuple[int, int]]:
    """The chunks of ``todo`` (``(point, chunk)`` pairs) that are worker ``worker``'s own share."""
    return [(j, c) for j, c in todo if (j * chunks_per_point + c) % workers == worker]


def order(todo: list[tuple[int, int]], chunks_per_point: int, worker: int, workers: int) -> list[tuple[int, int]]:
    """The order in which a worker visits the chunks: its own share first, then the others' (for
    the ones left behind), each in the order of ``todo``."""
    mine = share(todo, chunks_per_point, worker, workers)
    taken = set(mine)
    return mine + [p for p in todo if p not in taken]


@dataclass(frozen=True)
class Claim:
    """One claim file: which worker holds (or held) a chunk, since when, and whether it is done."""

    worker: int
    workers: int
    host: str
    pid: int
    started: float
    state: str  # "running" or "done"
    seconds: float | None  # how long the chunk took (done)
    refreshed: float  # the file's modification time
    text: str

    def stale(self, timeout: float, now: float | None = None) -> bool:
        """Whether a running claim is abandoned: its heartbeat is older than ``timeout`` seconds, or
        it was made on this host by a process that no longer exists (a killed worker's chunk is
        taken over at once, not after the timeout)."""
        if self.state != "running":
            return False
        if self.host == socket.gethostname() and not _alive(self.pid):
            return True
        return (now if now is not None else time.time()) - self.refreshed > timeout


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one we may not signal counts as alive)."""
    if pid <= 0:  # not a process id (0 and negative ids name process groups)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def claims_dir(out) -> Path:
    return Path(out) / CLAIMS


def _name(pos: tuple[int, int]) -> str:
    return f"{pos[0]}.{pos[1]}"


def read_claim(path: Path) -> Claim | None:
    """The claim in ``path`` (None if it is gone or unreadable)."""
    try:
        text = path.read_text()
        refreshed = path.stat().st_mtime
    except OSError:
        return None
    parts = text.split()
    try:
        worker, workers, host, pid, started, state = parts[:6]
        seconds = float(parts[6]) if len(parts) > 6 and state == "done" else None
        return Claim(int(worker), int(workers), host, int(pid), float(started), state, seconds, refreshed, text)
    except (ValueError, IndexError):
        return None


def read_claims(out) -> dict[tuple[int, int], Claim]:
    """Every claim of a store, by ``(point, chunk)``."""
    folder = claims_dir(out)
    found: dict[tuple[int, int], Claim] = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return found
    for name in names:
        parts = name.split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            continue
        claim = read_claim(folder / name)
        if claim is not None:
            found[(int(parts[0]), int(parts[1]))] = claim
    return found


class Claims:
    """The claims one worker makes in a store (see the module docstring)."""

    def __init__(self, out, worker: int, workers: int, timeout: float = DEFAULT_CLAIM_TIMEOUT,
                 since: float | None = None):
        self.since = since
        self.folder = claims_dir(out)
        self.folder.mkdir(exist_ok=True)
        self.worker, self.workers, self.timeout = worker, workers, float(timeout)
        self.host, self.pid = socket.gethostname(), os.getpid()
        self._held: dict[tuple[int, int], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- claiming
    def _create(self, path: Path) -> str | None:
        now = time.time()
        text = f"{self.worker} {self.workers} {self.host} {self.pid} {now:.3f} running\n"
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        return text

    def claim(self, pos: tuple[int, int]) -> bool:
        """Claim chunk ``pos`` for this worker: True if it now holds it. A claim that another worker
        holds and refreshes is respected, and so is one marked done after ``since`` (the time this
        worker verified the store: the chunk was computed since); a stale one, or one marked done
        before (the chunk was lost or damaged since), is taken over."""
        path = self.folder / _name(pos)
        for _ in range(2):
            text = self._create(path)
            if text is not None:
                with self._lock:
                    self._held[pos] = (text, time.time())
                return True
            old = read_claim(path)
            if old is None:
                continue  # it vanished (taken over by someone else, or unreadable): try once more
            if old.state == "running" and not old.stale(self.timeout):
                return False
            if old.state == "done" and self.since is not None and old.refreshed >= self.since:
                return False
            tomb = path.with_name(f"{path.name}.stale.{uuid.uuid4().hex[:8]}")
            try:
                os.rename(path, tomb)  # atomic: of several workers taking it over, one moves it
            except FileNotFoundError:
                return False
            moved = read_claim(tomb)
            if moved is None or moved.text != old.text:  # replaced in between by a fresh claim: put it back
                try:
                    os.link(tomb, path)
                except OSError:
                    pass
                os.unlink(tomb)
                return False
            os.unlink(tomb)
        return False

    def holds(self, pos: tuple[int, int]) -> bool:
        """Whether this worker still holds chunk ``pos`` (nobody took it over)."""
        with self._lock:
            held = self._held.get(pos)
        if held is None:
            return False
        try:
            return (self.folder / _name(pos)).read_text() == held[0]
        except OSError:
            return False

    def finish(self, pos: tuple[int, int]) -> None:
        """Mark chunk ``pos`` done (atomically replacing the claim) with the time it took."""
        with self._lock:
            held = self._held.pop(pos, None)
        if held is None:
            return
        text = held[0].replace(" running", f" done {time.time() - held[1]:.3f}")
        tmp = self.folder / f".{_name(pos)}.{uuid.uuid4().hex[:8]}"
        tmp.write_text(text)
        os.replace(tmp, self.folder / _name(pos))

    def release(self, pos: tuple[int, int]) -> None:
        """Give up chunk ``pos`` (not computed) so that another worker takes it at once."""
        with self._lock:
            held = self._held.pop(pos, None)
        if held is not None and self.holds_text(pos, held[0]):
            try:
                (self.folder / _name(pos)).unlink()
            except OSError:
                pass

    def holds_text(self, pos, text) -> bool:
        try:
            return (self.folder / _name(pos)).read_text() == text
        except OSError:
            return False

    # -------------------------------------------------------------- heartbeat
    def _beat(self) -> None:
        interval = max(0.05, min(30.0, self.timeout / 4))
        while not self._stop.wait(interval):
            with self._lock:
                held = list(self._held)
            for pos in held:
                try:
                    os.utime(self.folder / _name(pos))
                except OSError:
                    pass

    def __enter__(self) -> Claims:
        self._thread = threading.Thread(target=self._beat, name="deflation-claims", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for pos in list(self._held):
            self.release(pos)


@dataclass
class Status:
    """What :func:`status` found: per chunk state counts, per worker counts and the time left."""

    total: int
    done: int
    claimed: int
    missing: int
    damaged: int
    stale: int
    per_worker: dict[int, dict[str, int]]
    seconds_per_chunk: float | None
    active_workers: int
    problems: list[str]

    @property
    def remaining(self) -> int:
        return self.total - self.done

    @property
    def eta_seconds(self) -> float | None:
        """Chunks left times the mean seconds per chunk, divided over the workers active now (None:
        no chunk timed yet, or nobody running)."""
        if self.remaining == 0:
            return 0.0
        if self.seconds_per_chunk is None or self.active_workers == 0:
            return None
        return self.remaining * self.seconds_per_chunk / self.active_workers

    def describe(self, name: str) -> str:
        lines = [f"{name}: {self.done} of {self.total} chunks done, {self.claimed} claimed (being computed), "
                 f"{self.missing} missing, {self.damaged} damaged"
                 + (f"; {self.stale} stale claim(s) (workers gone: their chunks are counted missing)"
                    if self.stale else "")]
        for worker in sorted(self.per_worker):
            c = self.per_worker[worker]
            lines.append(f"  worker {worker}: {c.get('done', 0)} done, {c.get('claimed', 0)} computing"
                         + (f", {c['stale']} stale" if c.get("stale") else ""))
        eta = self.eta_seconds
        if eta == 0.0:
            lines.append("time left: none (every chunk is done)")
        elif eta is None:
            lines.append("time left: unknown (no worker is running now, or no chunk has been timed yet)"
                         if self.remaining else "")
        else:
            lines.append(f"time left: about {format_duration(eta)} at {self.active_workers} active worker(s) "
                         f"({self.seconds_per_chunk:.3g} s per chunk)")
        lines += [f"  damaged: {p}" for p in self.problems[:10]]
        return "\n".join(line for line in lines if line)


def status(out, *, timeout: float = DEFAULT_CLAIM_TIMEOUT, verify: bool = True) -> Status:
    """The state of a store's chunks: done (intact; with ``verify`` each is read back against its
    digest, else its digest being set counts), claimed by a running worker, missing, damaged; per
    worker what it has done and is computing; and the time left at the current pace."""
    from . import store

    root, study, chunk = store.open_readonly(out)
    if verify:
        found = store.verify(root, study, chunk)
        done, damaged, problems = found.done, found.damaged, found.problems
    else:
        flags = store.read_flags(root)
        done, damaged, problems = flags != 0, np.zeros(flags.shape, bool), []
    nc = done.shape[-1]
    done = done.reshape(-1, nc)
    damaged = damaged.reshape(-1, nc)
    now = time.time()
    per_worker: dict[int, dict[str, int]] = {}
    claimed = stale = 0
    times = []
    active = set()
    claims = read_claims(out)
    for (j, c), claim in claims.items():
        if j >= done.shape[0] or c >= nc:
            continue
        counts = per_worker.setdefault(claim.worker, {})
        if claim.state == "done" and claim.seconds is not None:
            times.append(claim.seconds)
        if done[j, c]:
            if claim.state == "done":
                counts["done"] = counts.get("done", 0) + 1
        elif claim.state == "running":
            if claim.stale(timeout, now):
                stale += 1
                counts["stale"] = counts.get("stale", 0) + 1
            else:
                claimed += 1
                counts["claimed"] = counts.get("claimed", 0) + 1
                active.add((claim.host, claim.pid))
    n_done, n_damaged = int(done.sum()), int(damaged.sum())
    running = {p for p, cl in claims.items() if cl.state == "running" and not cl.stale(timeout, now)}
    missing = int((~done & ~damaged).sum()) - sum(1 for (j, c) in running if not damaged[j, c])
    return Status(total=int(done.size), done=n_done, claimed=claimed, missing=max(0, missing), damaged=n_damaged,
                  stale=stale, per_worker=per_worker, seconds_per_chunk=float(np.mean(times)) if times else None,
                  active_workers=len(active), problems=problems)


def format_duration(seconds: float) -> str:
    """``seconds`` for a reader: "45 s", "12.5 min" or "3.1 h"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
