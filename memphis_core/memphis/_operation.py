"""Operation handles: how a frontend waits for something the core started.

Every call that talks to the broker returns an :class:`Operation` at once. The core finishes it
when the reply (or a failure) arrives; frontends wait in their own way (a condition variable, a
trio or asyncio event) and then call :meth:`Operation.outcome`. No callbacks run inside the core.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from memphis_core.nats._errors import LocalProtocolError, MemphisError

__all__ = ["Operation"]

T = TypeVar("T")


class Operation(Generic[T]):
    """A pending result: ``done`` turns true exactly once, with a result or an error."""

    __slots__ = ("_error", "_result", "done", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self.done = False
        self._result: T | None = None
        self._error: MemphisError | None = None

    def finish(self, result: T) -> None:
        # First outcome wins: a late reply after a timeout (or a failure after a reply) must not
        # change what a caller may already have read.
        if not self.done:
            self.done = True
            self._result = result

    def fail(self, error: MemphisError) -> None:
        if not self.done:
            self.done = True
            self._error = error

    @property
    def error(self) -> MemphisError | None:
        return self._error

    def outcome(self) -> T:
        """Return the result or raise the error.

        Raises:
            MemphisError: the operation failed (the specific subclass).
            LocalProtocolError: called before ``done``.
        """
        if not self.done:
            raise LocalProtocolError(f"{self.what} has not finished")
        if self._error is not None:
            raise self._error
        # ``_result`` is None only before ``done`` or for operations whose result type is None, so
        # the ignore covers a case the check above excludes.
        return self._result  # type: ignore[return-value]

    def __repr__(self) -> str:
        state = "pending" if not self.done else ("failed" if self._error else "done")
        return f"<Operation {self.what} {state}>"

    @classmethod
    def completed(cls, what: str, result: T) -> Operation[T]:
        op: Operation[T] = cls(what)
        op.finish(result)
        return op
