"""Whether the tests run against the optional mypyc-compiled core (docs/compiled.md).

``tests/core`` passes on both builds. A few tests check what only interpreted code can do: replace
a method of a core class, subclass a core class in a test, or pass an argument of the wrong
Python type to a core function and get the function's own ``LocalProtocolError``. A compiled
function checks its arguments' types at the call (``TypeError``) and its classes are closed, so
those tests are marked ``pure_only`` and skipped there, saying why.
"""

from __future__ import annotations

import pytest

from memphis_core.nats import _session

#: True when the core's modules are mypyc extensions (``make mypyc``), not ``.py`` files.
CORE_COMPILED = not _session.__file__.endswith(".py")

pure_only = pytest.mark.skipif(
    CORE_COMPILED,
    reason="checks what only the interpreted core does (wrong-type arguments reaching the "
    "function, a replaced method, a subclass of a core class); see docs/compiled.md",
)
