"""The options declared once (``**options: Unpack[...]``) stay exact for a type checker.

``typed_options/options_calls.py`` makes right and wrong calls of every public call that takes
declared options, in the three frontends; ``mypy --strict`` must accept the right ones and
report each wrong one (a wrong one that passed would leave an unused ``type: ignore``, which
``--strict`` reports).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.typecheck import mypy_strict_outside

TYPED = Path(__file__).resolve().parent / "typed_options"


def test_a_wrong_option_is_a_type_error(tmp_path: Path) -> None:
    mypy_strict_outside(TYPED, tmp_path)
