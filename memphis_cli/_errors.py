"""The CLI's own error: a one-line message for a failure the library does not raise itself."""

from __future__ import annotations

__all__ = ["USAGE", "CliError"]

#: argparse's exit code for bad command lines; ours for bad input it cannot see (env, headers).
USAGE = 2


class CliError(Exception):
    """Printed as ``memphis: <message>`` on one line; the process exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
