"""The server pool: which NATS server a session dials next (docs/cluster-client.md).

Sans-IO like the rest of the session: no clock (times are passed in), no entropy except the
``random.Random`` the session hands over (seedable, so tests are deterministic).

Policy, after nats.go's (docs.nats.io, "Automatic Reconnections" and "Cluster discovery"):

* the pool starts with the servers given to ``connect()``, shuffled unless told not to, so
  that many clients spread over a cluster instead of all dialling its first node;
* servers a server advertises in INFO ``connect_urls`` are added (shuffled, at the end), and
  discovered servers that stop being advertised are dropped again, unless discovery is off;
* after a server is lost, or an attempt on it failed, it moves to the end: every other server
  is tried before it again (nats.go's ``selectNextServer``);
* the reconnect interval is counted per server: a server is dialled at once unless it was
  itself tried less than ``reconnect_interval`` ago, so failing over to another node costs no
  wait, while a single server (or a whole pool that is down) is retried at the interval;
* ``max_reconnect`` is a budget per server, as nats.go's ``MaxReconnect``: each server may be
  dialled that many times in one outage, and the session gives up once every server used its
  budget. A pool of n servers therefore survives an outage of at least about
  ``max_reconnect * reconnect_interval`` seconds, whatever n (a whole-pool count would shrink
  that to a third with three servers). All budgets refill once a connection proves useful.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Sequence
from typing import Final, overload

from ._errors import LocalProtocolError

__all__ = ["Server", "ServerPool", "parse_server", "server_name"]

#: A server address as dialled: (host, port).
Server = tuple[str, int]

_MAX_PORT: Final = 65_535


@overload
def server_name(server: Server) -> str: ...
@overload
def server_name(server: Server | None) -> str | None: ...
def server_name(server: Server | None) -> str | None:
    """``host:port`` of a server (an IPv6 host in brackets, as ``parse_server`` reads it), or
    None for None: how errors, logs and ``Connection.connected_server`` name a server."""
    if server is None:
        return None
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_server(text: str, default_port: int) -> tuple[Server, str | None]:
    """Parse ``[scheme://]host[:port]``; return ``((host, port), scheme or None)``.

    The port is taken only when what follows the last ``:`` is all digits, so a bare host that
    happens to contain ``:`` for another reason stays one host (the Go SDK's single-host form
    keeps working). IPv6 literals need brackets when a port follows (``[::1]:4222``); a bare
    literal with several colons is a host without a port.

    Raises:
        LocalProtocolError: empty host, or a port outside 1..65535.
    """
    scheme: str | None = None
    rest = text.strip()
    head, sep, tail = rest.partition("://")
    # Only the NATS schemes are stripped here; ``http://`` and ``https://`` are removed earlier by
    # the option builder (docs/protocol.md §1.1, the Go SDK's habit), and any other scheme is left
    # in the host so that the dial fails with a name the user can recognise.
    if sep and head.lower() in ("nats", "tls"):
        scheme, rest = head.lower(), tail
    rest = rest.rstrip("/")
    host, port = rest, default_port
    if rest.startswith("["):
        end = rest.find("]")
        if end > 0:
            host = rest[1:end]
            after = rest[end + 1 :]
            if after.startswith(":") and after[1:].isdigit():
                port = int(after[1:])
            elif after:
                raise LocalProtocolError(f"bad server address {text!r}")
    # Exactly one colon: ``host:port``. Two or more without brackets is a bare IPv6 literal, whose
    # last group may well be all digits (``::1``), so no port is split off.
    elif rest.count(":") == 1:
        name, _, digits = rest.rpartition(":")
        if digits.isdigit():
            host, port = name, int(digits)
    if not host:
        raise LocalProtocolError(f"server address {text!r} has no host")
    if not 1 <= port <= _MAX_PORT:
        raise LocalProtocolError(f"port must be between 1 and {_MAX_PORT}, not {port}")
    return (host, port), scheme


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Entry:
    __slots__ = ("discovered", "last_attempt", "reconnects", "server")

    def __init__(self, server: Server, discovered: bool) -> None:
        self.server = server
        self.discovered = discovered
        self.last_attempt: float | None = None  # when it was last dialled, failed or lost
        self.reconnects = 0  # reconnect attempts on it since a connection last proved useful

    def __repr__(self) -> str:
        return f"_Entry({self.server!r}, discovered={self.discovered})"


class ServerPool:
    """The servers one session may use, in the order it will try them.

    Args:
        servers: the servers given by the user (at least one).
        rng: the source of the shuffles (seed it for reproducible tests).
        randomize: shuffle the given servers and every batch of discovered ones.
        discover: add the servers of INFO ``connect_urls``.
    """

    def __init__(
        self,
        servers: Sequence[Server],
        *,
        rng: random.Random,
        randomize: bool = True,
        discover: bool = True,
    ) -> None:
        if not servers:
            raise LocalProtocolError("at least one server is required")
        self._rng = rng
        self._randomize = randomize
        self._discover = discover
        entries: list[_Entry] = []
        for server in servers:
            # Duplicates dropped in given order, before the shuffle: a server listed twice would
            # otherwise get twice the share of first connects and be retried twice per round.
            if all(e.server != server for e in entries):
                entries.append(_Entry(server, discovered=False))
        if randomize:
            rng.shuffle(entries)
        self._entries = entries
        # The head of the list is always the next server to dial; ``rotate`` keeps it that way.
        self._current = entries[0]
        # The first connect tries each given server once, then gives up (a refused first
        # connect is not retried; docs/cluster-client.md).
        # Counts the servers left *after* the first one: the first dial is made by the frontend
        # before any failure is reported.
        self._initial_left = len(entries) - 1
        # A TLS name for discovered servers given as IP literals: a cluster advertises its
        # nodes by address, but their certificates name the host the user gave (nats.go).
        self._tls_name = next((s[0] for s in servers if not _is_ip(s[0])), None)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def current(self) -> Server:
        """The server being used, or the next one to dial after a loss."""
        return self._current.server

    @property
    def servers(self) -> list[Server]:
        """Every server, in the order they will be tried (the current one first)."""
        return [e.server for e in self._entries]

    def tls_hostname(self) -> str:
        """The name to verify the current server's certificate against."""
        entry = self._current
        # Given servers are always checked against their own name: only addresses the cluster
        # advertised (connect_urls are usually IPs) borrow the user's host name.
        if entry.discovered and _is_ip(entry.server[0]) and self._tls_name is not None:
            return self._tls_name
        return entry.server[0]

    def discovered(self, urls: Iterable[object]) -> None:
        """A server's INFO listed ``urls`` (``connect_urls``): add new ones, drop stale ones.

        Only discovered servers are ever dropped, never the given ones nor the current one.
        Entries that are not strings or do not parse are ignored (the server's data).
        """
        if not self._discover:
            return
        advertised: list[Server] = []
        for url in urls:
            if not isinstance(url, str):
                continue
            try:
                # connect_urls are the nodes' client addresses as ``host:port``; the NATS default
                # 4222 only fills in for an entry without a port (the user's default port is a
                # setting of the user's, not of the cluster's nodes).
                server, _ = parse_server(url, 4222)
            except LocalProtocolError:
                continue
            if server not in advertised:
                advertised.append(server)
        self._entries = [
            e
            for e in self._entries
            # The current server stays even if no longer advertised: dropping it would lose its
            # ``last_attempt`` and let ``due`` redial it at once after a loss.
            if not e.discovered or e is self._current or e.server in advertised
        ]
        known = {e.server for e in self._entries}
        # Shuffled among themselves only and appended: given servers keep priority over discovered
        # ones, whose addresses may not even be reachable from the client.
        fresh = [_Entry(s, discovered=True) for s in advertised if s not in known]
        if self._randomize:
            self._rng.shuffle(fresh)
        self._entries.extend(fresh)

    def failed(self, now: float) -> None:
        """The current server was lost, or an attempt on it failed, at ``now``."""
        self._current.last_attempt = now

    def initial_left(self) -> bool:
        """During the first connect: is there a given server not tried yet? (consumes it)"""
        if self._initial_left <= 0:
            return False
        self._initial_left -= 1
        return True

    def rotate(self) -> Server:
        """Move the current server to the end; the head is the next to dial. Returns it."""
        entries = self._entries
        current = self._current
        # With one server there is nothing to rotate; ``due`` alone spaces its attempts.
        if len(entries) > 1:
            entries.remove(current)
            entries.append(current)
        self._current = entries[0]
        return self._current.server

    def next_with_budget(self, limit: int) -> Server | None:
        """After a loss: rotate to the next server with reconnect attempts left, and count one.

        Args:
            limit: attempts allowed per server (nats.go's ``MaxReconnect``); -1: no limit, and
                nothing is counted.

        Returns:
            The server to dial next, or None when every server used its budget.
        """
        # ``len`` rotations visit every entry once, the one just lost last.
        for _ in range(len(self._entries)):
            self.rotate()
            entry = self._current
            if limit < 0:
                return entry.server
            if entry.reconnects < limit:
                entry.reconnects += 1
                return entry.server
        return None

    def refill(self) -> None:
        """A connection proved useful: every server's reconnect budget is whole again."""
        for entry in self._entries:
            entry.reconnects = 0

    def due(self, now: float, interval: float) -> float:
        """When the current server may be dialled: at once unless tried within ``interval``."""
        last = self._current.last_attempt
        if last is None:
            return now
        # Measured from the last attempt on *this* server, not from the loss: a failover to a node
        # not tried recently costs no wait (docs/cluster-client.md, "Reconnecting and failover").
        return max(now, last + interval)
