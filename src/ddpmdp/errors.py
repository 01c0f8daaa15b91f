"""User-facing errors.

Every problem a user can fix (bad input, wrong file, inconsistent options) raises
:class:`DdpmdpError` with one actionable sentence. The command line prints that
sentence and exits with status 2, without a traceback.
"""
from __future__ import annotations


class DdpmdpError(ValueError):
    """An error caused by user input; the message says what to change."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`DdpmdpError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise DdpmdpError(message)
