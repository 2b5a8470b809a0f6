"""Every test runs against the package with jaxtyping's runtime shape and type checks on: each
function and dataclass of ``deflation`` is checked against its annotations (``_typecheck.py``)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from jaxtyping import install_import_hook  # noqa: E402

with install_import_hook("deflation", "_typecheck.typecheck"):
    import deflation  # noqa: F401, E402  (turns on float64 before any test builds arrays)
    import deflation.baselines  # noqa: F401, E402
    import deflation.cli  # noqa: F401, E402
    import deflation.dense  # noqa: F401, E402
    import deflation.montecarlo  # noqa: F401, E402

# The tests share one persistent JAX compilation cache, in this process and in the commands they
# start in subprocesses: ``.pytest_cache/jax`` (git ignores it), or DEFLATION_TEST_CACHE (a folder,
# or "off"). Most of the suite's time is compilation of small programs; a second run of the suite
# reads them from the cache instead. Never the user's ~/.cache.
from deflation import compilation_cache  # noqa: E402

_cache = os.environ.get("DEFLATION_TEST_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax"))
if _cache.strip().lower() in compilation_cache.OFF:
    os.environ["DEFLATION_CACHE_DIR"] = "off"
else:
    # subprocesses (commands, notebook kernels, the docs build, benchmark scripts) read JAX's own
    # variables at import; this process is configured directly
    # (every program, however quick to compile: the suite compiles thousands of small ones; no
    # size cap, so no eviction racing between the processes that share the folder)
    os.environ.update(DEFLATION_CACHE_DIR=_cache, JAX_COMPILATION_CACHE_DIR=_cache,
                      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    import jax  # noqa: E402

    Path(_cache).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _compiled_programs_released():
    """Free the compiled programs of a test module when it ends (they are in the persistent cache):
    the in-memory caches would otherwise keep every program of the session alive."""
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
    _return_free_memory()


def _return_free_memory():
    """Hand the heap memory just freed back to the system (glibc keeps it otherwise, and the
    process's resident size only grows from one module to the next); nothing elsewhere."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = getattr(libc, "malloc_trim", None)
    except OSError:
        trim = None
    if trim is not None:
        trim(0)
