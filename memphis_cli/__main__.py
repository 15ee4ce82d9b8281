"""``python -m memphis_cli``: the same as the ``memphis`` console script."""

from __future__ import annotations

import sys

from memphis_cli import main

if __name__ == "__main__":
    sys.exit(main())
