"""Errors about one parameter: a bad value names the parameter it is about.

:class:`ParamError` is a ``ValueError`` that carries the parameter's name (``.param``) as the
caller wrote it (``"rtol"`` for :func:`deflation.gradient_flow`, ``"params.rtol"`` in a study), so a
front end maps it to its own spelling (the command line names the flag) without rewriting the
message; :class:`ParamTypeError`, a wrong kind of value, is also a ``TypeError``. Every check of
the package's input validation raises one of them.
"""

from __future__ import annotations


class ParamError(ValueError):
    """A bad value of one parameter; ``param`` is its name as the caller wrote it (or None).

    The message names the parameter, the value received and what is allowed; ``str(err)`` is that
    message alone.
    """

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param

    def __reduce__(self):  # pickled (e.g. across processes) with its parameter
        return type(self), (str(self), self.param)


class ParamTypeError(ParamError, TypeError):
    """A value of the wrong kind for one parameter (not a number, not an integer, not an array):
    both a :class:`ParamError` and a ``TypeError``."""
