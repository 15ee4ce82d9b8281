"""Tables for people, plain columns for pipes.

On a terminal a table is drawn with rich, fitted to the window. Anywhere else (a pipe, a file,
``| grep``) rich would still fit it to 80 columns and fold long cells into fragments that no
line-based tool can read, so there the same rows are printed as plain aligned columns, one
row per line, never wrapped; ``--json`` is the format for programs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

__all__ = ["print_table", "stdout_console", "stdout_is_terminal"]

_ESCAPES = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def stdout_console() -> Console:
    """A rich console on the current ``sys.stdout`` (looked up per call, so capture works)."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal (a closed or fd-less stream counts as not one)."""
    try:
        return sys.stdout.isatty()
    except ValueError:
        return False


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: frozenset[str] = frozenset(),
    no_wrap: frozenset[str] = frozenset(),
) -> None:
    """Print ``rows`` under ``columns``: a rich table on a terminal, plain columns elsewhere.

    ``right`` names the right-aligned (numeric) columns; ``no_wrap`` those a terminal table
    must never fold (names people copy). The plain form has no title: its first line is the
    header, so ``tail -n +2`` gives the rows.
    """
    if stdout_is_terminal():
        table = Table(title=title)
        for column in columns:
            table.add_column(
                column,
                justify="right" if column in right else "left",
                no_wrap=column in no_wrap,
                overflow="ellipsis" if column in no_wrap else "fold",
            )
        for row in rows:
            table.add_row(*row)
        stdout_console().print(table)
        return
    # One row per line, whatever the cells hold: a message body or an error text with a line
    # break or a tab would otherwise split a row or shift its columns.
    rows = [[cell.translate(_ESCAPES) for cell in row] for row in rows]
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]
    for line in (list(columns), *rows):
        cells = [
            cell.rjust(width) if column in right else cell.ljust(width)
            for cell, width, column in zip(line, widths, columns, strict=True)
        ]
        print("  ".join(cells).rstrip(), flush=False)
    sys.stdout.flush()
