"""deflation: exact, batched gradient flow on over-parametrized tensor decomposition.

Simulates the system of Ge, Ren, Wang and Zhou, "Understanding Deflation Process in
Over-parametrized Tensor Decomposition" (NeurIPS 2021). Importing the package turns on
``jax_enable_x64`` (float64 by default); pass float32 arrays to work in single precision.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from importlib.metadata import PackageNotFoundError as _NotFound, version as _version  # noqa: E402

from .algorithm import Algorithm2Result, EpochRecord, modified_gradient_flow  # noqa: E402
from .dynamics import (  # noqa: E402
    from_lognorm,
    loss,
    residual,
    tensor_power_velocity,
    to_lognorm,
    velocity,
)
from .flow import FlowResult, gradient_flow  # noqa: E402
from .init import sample_sphere, sample_sphere_batch, seed_keys  # noqa: E402
from .partition import Partition, partition  # noqa: E402
from .target import Target  # noqa: E402
from .theorem import Theorem1Parameters, theorem1_parameters  # noqa: E402
from . import montecarlo  # noqa: E402  (xarray/zarr are imported lazily inside)

try:
    __version__ = _version("deflation")
except _NotFound:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = [
    "Algorithm2Result",
    "EpochRecord",
    "FlowResult",
    "Partition",
    "Target",
    "from_lognorm",
    "gradient_flow",
    "loss",
    "modified_gradient_flow",
    "partition",
    "residual",
    "sample_sphere",
    "sample_sphere_batch",
    "seed_keys",
    "tensor_power_velocity",
    "Theorem1Parameters",
    "theorem1_parameters",
    "to_lognorm",
    "velocity",
]
