"""The base of alvar's user-facing errors.

An :class:`AlvarError` says something the person running alvar can fix (a bad file, a service that does not
answer, a missing setting); its message is written for them. The `alvar` command prints it as
``error: <message>`` and exits with code 2, in one place (:mod:`alvar.scripts.cli`); any other exception is a
bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class AlvarError(Exception):
    """An error whose message is meant for the person running alvar (see the module docstring)."""


@contextmanager
def user_facing(*error_types: type[Exception]) -> Iterator[None]:
    """Within it, an error of ``error_types`` raised by code that is not alvar's to type (a learner's ValueError
    for one class, a FileNotFoundError for a model never trained) is the person's to fix: it becomes an
    :class:`AlvarError` with the same message."""
    try:
        yield
    except error_types as error:
        raise AlvarError(str(error)) from error
