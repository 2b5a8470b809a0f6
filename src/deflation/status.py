"""The status of a trajectory: one vocabulary from the stepping loop to the stored studies.

Every result carries a ``status`` per trajectory (``FlowResult.status``, ``GDResult.status``,
``EpochRecord.status``, a study's ``status`` variable), an int32 array of the codes of
:class:`Status` (int8 in a study's store, with -1 for a seed that was not computed). The codes are
the values stored in existing studies and must not change.
"""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """A trajectory's status code (its integer value is what results and stores hold).

    - ``SUCCESS`` (0): the solve reached its end time, every saved state is finite and, for a
      gradient flow, the loss never rose.
    - ``MAX_STEPS`` (1): the solver used up its step budget (``max_steps``) before the end time.
    - ``NONFINITE`` (2): a state, its vector field or a saved loss is NaN or infinite (for
      gradient descent: the iterates diverged).
    - ``SOLVER_FAILED`` (3): the solver or its step-size controller failed otherwise (e.g. the
      step size underflowed).
    - ``LOSS_INCREASED`` (4): the loss rose between save points by more than its accuracy floor
      (:func:`deflation.flow.loss_increased`): the solve is not accurate (a tolerance too loose),
      or gradient descent's step is too large for the iterates to descend.

    ``Status(code).description`` is the text printed for it (``"max_steps reached"``).

    A member is an ``int``: it compares with, and is written into, NumPy and JAX arrays as its
    code (JAX takes it as a weakly typed scalar, so an int32 status array stays int32).
    """

    SUCCESS = 0
    MAX_STEPS = 1
    NONFINITE = 2
    SOLVER_FAILED = 3
    LOSS_INCREASED = 4

    @property
    def description(self) -> str:
        """The text printed for this status (``"success"``, ``"max_steps reached"``, ...)."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {Status.SUCCESS: "success", Status.MAX_STEPS: "max_steps reached",
                 Status.NONFINITE: "non-finite state", Status.SOLVER_FAILED: "solver failed",
                 Status.LOSS_INCREASED: "loss increased"}


def describe(code) -> str:
    """The description of a status code (any integer; an unknown one reads ``"status k"``)."""
    try:
        return Status(int(code)).description
    except ValueError:
        return f"status {int(code)}"


def legend(codes=tuple(Status)) -> str:
    """``"0 success, 1 max_steps reached, ..."``: the codes ``codes`` with their descriptions."""
    return ", ".join(f"{int(c)} {describe(c)}" for c in codes)
