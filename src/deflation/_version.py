"""The installed package's version (``0+unknown`` when running from a source tree without installation)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deflation")
except PackageNotFoundError:  # pragma: no cover - a source tree without installation
    __version__ = "0+unknown"
