"""The project's errors: each carries a short code, its exit code and a hint.

The CLI turns them into output and exit codes in one place; the core only raises them.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LanesError(Exception):
    """Base error. `code` is stable and machine-readable; `hint` says what to do instead."""

    exit_code: ClassVar[int] = 1

    def __init__(self, code: str, message: str, hint: str = "", **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.hint:
            doc["hint"] = self.hint
        doc.update(self.extra)
        return doc


class OperationalError(LanesError):
    """Git failed, the disk is full, a path is in the way: exit 1."""

    exit_code = 1


class BadInput(LanesError):
    """An invalid name, flag, fragment or configuration; nothing was changed: exit 2."""

    exit_code = 2


class Contention(LanesError):
    """Someone else holds the lane or the integrator lock: exit 3."""

    exit_code = 3


class Refused(LanesError):
    """A rule said no: a bounce, a contended surface, a failed gate, a broken ledger: exit 4."""

    exit_code = 4
