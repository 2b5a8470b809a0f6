"""Every test runs against the package with jaxtyping's runtime shape and type checks on: each
function and dataclass of ``deflation`` is checked against its annotations (``_typecheck.py``)."""

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from jaxtyping import install_import_hook  # noqa: E402

with install_import_hook("deflation", "_typecheck.typecheck"):
    import deflation  # noqa: F401, E402  (turns on float64 before any test builds arrays)
    import deflation.cli  # noqa: F401, E402
    import deflation.montecarlo  # noqa: F401, E402
    import deflation.baselines  # noqa: F401, E402
    import deflation.dense  # noqa: F401, E402

# Commands run by the tests (in this process or in subprocesses) share one compilation cache for
# the session, in a temporary folder: never the user's ~/.cache.
os.environ.setdefault("DEFLATION_CACHE_DIR", tempfile.mkdtemp(prefix="deflation-test-cache-"))
