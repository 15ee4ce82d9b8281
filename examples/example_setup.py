"""What the examples take from outside: where the broker is, and which event loop to run on.

This is the set-up every example shares and none of them is about; a program of your own would
write these values out or take them from its own configuration.

* The broker, from the environment (default: ``memphis-broker``'s): ``MEMPHIS_HOST``
  (127.0.0.1), ``MEMPHIS_PORT`` (6666), ``MEMPHIS_USERNAME`` (root),
  ``MEMPHIS_CONNECTION_TOKEN`` (memphis). The examples connect with
  ``memphis.connect(**broker_args())``, which is ``memphis.connect(host, username,
  connection_token=..., port=...)``.
* The event loop library of the ``*_async.py`` examples, from the command line:
  ``--lib asyncio`` (the default) or ``--lib trio``. ``memphis_asyncio`` and ``memphis_trio``
  have one API (the same classes), so one program runs on either.
"""

from __future__ import annotations

import argparse
import os
from typing import Literal, TypedDict


class BrokerArgs(TypedDict):
    """The arguments of ``connect`` that the examples pass (the same in every frontend)."""

    host: str
    port: int
    username: str
    connection_token: str


def broker_args() -> BrokerArgs:
    """``connect``'s arguments from the environment, read at each call (``make demo`` sets the
    environment after importing the quickstart)."""
    return BrokerArgs(
        host=os.environ.get("MEMPHIS_HOST", "127.0.0.1"),
        port=int(os.environ.get("MEMPHIS_PORT", "6666")),
        username=os.environ.get("MEMPHIS_USERNAME", "root"),
        connection_token=os.environ.get("MEMPHIS_CONNECTION_TOKEN", "memphis"),
    )


def event_loop_library(description: str | None) -> Literal["asyncio", "trio"]:
    """The ``--lib`` of an async example's command line; anything else exits with a usage
    message (argparse's)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lib",
        choices=["asyncio", "trio"],
        default="asyncio",
        help="the event loop library: memphis_asyncio or memphis_trio (default asyncio)",
    )
    lib: Literal["asyncio", "trio"] = parser.parse_args().lib
    return lib
