"""deflation: exact, batched gradient flow on over-parametrized tensor decomposition.

Simulates the system of Ge, Ren, Wang and Zhou, "Understanding Deflation Process in
Over-parametrized Tensor Decomposition" (NeurIPS 2021).

Precision. Importing the package turns on JAX's ``jax_enable_x64`` for the whole process, so that
arrays are float64 by default: the loss is resolved far below 1e-16 only in double precision, and
every result of this package is computed in it. This is a process-wide JAX setting, done once here
and nowhere else. To keep JAX's float32 default, set the environment variable
``JAX_ENABLE_X64=0`` (or ``false``) before the import: the package then leaves the setting alone,
and its functions work in the precision of the arrays they are given.
"""

import os as _os

import jax as _jax

if _os.environ.get("JAX_ENABLE_X64", "").strip().lower() not in ("0", "false", "no", "off"):
    _jax.config.update("jax_enable_x64", True)

from . import (  # noqa: E402
    models,  # noqa: F401  (re-exported: normalized, plain, asymmetric: the model= of every function)
    montecarlo,  # noqa: F401  (re-exported: studies; xarray and zarr are imported when a study runs)
)
from ._version import __version__  # noqa: E402
from .algorithm import Algorithm2Result, EpochRecord, modified_gradient_flow  # noqa: E402
from .dynamics import (  # noqa: E402
    from_lognorm,
    loss,
    residual,
    tensor_power_velocity,
    to_lognorm,
    velocity,
)
from .errors import ParamError, ParamTypeError  # noqa: E402
from .flow import FlowResult, gradient_flow  # noqa: E402
from .gd import GDResult, gradient_descent  # noqa: E402
from .init import sample_sphere, sample_sphere_batch, seed_keys  # noqa: E402
from .integrate import EventConfig, Solution, SolverConfig, solve  # noqa: E402
from .partition import Partition, partition  # noqa: E402
from .status import Status  # noqa: E402
from .target import Target  # noqa: E402
from .theorem import Theorem1Parameters, theorem1_parameters  # noqa: E402

__all__ = [
    "Algorithm2Result",
    "EpochRecord",
    "EventConfig",
    "FlowResult",
    "GDResult",
    "ParamError",
    "ParamTypeError",
    "Partition",
    "Solution",
    "SolverConfig",
    "Status",
    "Target",
    "Theorem1Parameters",
    "__version__",
    "from_lognorm",
    "gradient_descent",
    "gradient_flow",
    "loss",
    "modified_gradient_flow",
    "partition",
    "residual",
    "sample_sphere",
    "sample_sphere_batch",
    "seed_keys",
    "solve",
    "tensor_power_velocity",
    "theorem1_parameters",
    "to_lognorm",
    "velocity",
]
