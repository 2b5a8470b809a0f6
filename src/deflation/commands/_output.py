"""Where the commands write: the ``--out`` directory, checked before any computation, and files
written atomically (a temporary file in the same directory, then ``os.replace``), so that several
processes writing the same ``--out`` at once each leave complete files, never a mix or a torn one.

Every failure is a ``ValueError`` naming the flag (one line on the command line, exit code 2).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def prepare_dir(flag: str, path: str) -> Path:
    """Create the directory ``path`` (and its parents) if needed and check that a file can be
    written in it; ``ValueError`` naming ``flag`` otherwise."""
    if not str(path).strip():
        raise ValueError(f"{flag} must name a directory, got {path!r}")
    out = Path(path)
    try:
        if out.exists() and not out.is_dir():
            raise ValueError(f"{flag} {path!r} exists and is not a directory")
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{flag} {path!r}: cannot create the directory ({err.strerror or err})") from None
    except ValueError as err:  # e.g. an embedded NUL byte
        if str(err).startswith(flag):
            raise
        raise ValueError(f"{flag} {path!r}: {err}") from None
    try:
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
    except OSError as err:
        raise ValueError(f"{flag} {path!r}: cannot write in the directory ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)
    return out


def write_atomic(flag: str, path: Path, write: Callable[[str], object]) -> Path:
    """Write ``path`` through ``write(temporary path)`` and move it into place with ``os.replace``.

    The temporary file is in the same directory and keeps the suffix of ``path`` (so that writers
    choosing the format by suffix, like ``savefig``, write the right one). ``ValueError`` naming
    ``flag`` if it cannot be written.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
        os.close(fd)
    except OSError as err:
        raise ValueError(f"{flag} {str(path.parent)!r}: cannot write {path.name} ({err.strerror or err})") from None
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except OSError as err:
        raise ValueError(f"{flag} {str(path.parent)!r}: cannot write {path.name} ({err.strerror or err})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
