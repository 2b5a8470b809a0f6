"""JAX's persistent compilation cache for the command line.

Compiling the batched solve takes most of a first command's time; with the cache on, a second
``deflation figure1`` (or any command) in a new process reads the compiled programs from disk
instead. The command line turns it on by default, in the user's cache directory
(``$XDG_CACHE_HOME/deflation/jax``, by default ``~/.cache/deflation/jax``; on macOS
``~/Library/Caches/deflation/jax``), capped at :data:`MAX_BYTES` (least recently used entries are
dropped first).

To move it, set ``DEFLATION_CACHE_DIR=/some/folder`` (or pass ``deflation --cache-dir /some/folder
COMMAND ...``); to turn it off, ``DEFLATION_CACHE_DIR=off`` (or ``--cache-dir off``). A cache JAX
was already told to use (``JAX_COMPILATION_CACHE_DIR``) is left as it is. Library calls from
Python do not touch JAX's settings; call :func:`enable` to use the cache there too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Largest size of the cache folder (bytes); the least recently used entries go first.
MAX_BYTES = 2 * 1024**3

#: Values of ``DEFLATION_CACHE_DIR`` / ``--cache-dir`` that turn the cache off.
OFF = ("", "0", "off", "none", "false", "no")


def default_dir() -> Path:
    """The user's cache directory for deflation's compiled programs."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "deflation" / "jax"


def choose(requested: str | None = None) -> Path | None:
    """The folder to use: ``requested`` (a path, or one of :data:`OFF`), else ``DEFLATION_CACHE_DIR``,
    else :func:`default_dir`; None when turned off."""
    value = requested if requested is not None else os.environ.get("DEFLATION_CACHE_DIR")
    if value is None:
        return default_dir()
    if value.strip().lower() in OFF:
        return None
    return Path(value).expanduser()


def enable(folder: str | os.PathLike | None) -> Path | None:
    """Turn on JAX's persistent compilation cache in ``folder`` (created if needed); None turns
    nothing on. Returns the folder in use, or None (off, already configured by the user through
    ``JAX_COMPILATION_CACHE_DIR``, or the folder cannot be created: the command then just compiles)."""
    import jax

    if folder is None or os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir:  # type: ignore[attr-defined]
        return None
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return folder
