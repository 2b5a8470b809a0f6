import sys
from pathlib import Path

import deflation  # noqa: F401  (turns on float64 before any test builds arrays)

sys.path.insert(0, str(Path(__file__).parent))
