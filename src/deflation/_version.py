"""The installed package's version (``0+unknown`` when running from a source tree without installation).

It must change whenever results can change: a study store records it (with the jax and jaxlib
versions) and refuses to be resumed by another (:func:`deflation.montecarlo.store.provenance`)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deflation")
except PackageNotFoundError:  # pragma: no cover - a source tree without installation
    __version__ = "0+unknown"
