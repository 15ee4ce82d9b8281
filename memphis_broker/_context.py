"""What every request handler needs: the connection, JetStream, the store and the user list."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Final

from nats.aio.client import Client
from nats.js.client import JetStreamContext

from memphis_broker._gojson import GoJSONError, Spec, decode, encode
from memphis_broker._jsapi import JSApi
from memphis_broker._store import Store, key
from memphis_core.memphis._control import SDK_CLIENTS_UPDATES
from memphis_core.memphis._names import name_error

__all__ = [
    "CLIENTS_UPDATES",
    "Context",
    "now_ms",
    "split_tenant",
    "station_request",
]

CLIENTS_UPDATES: Final = SDK_CLIENTS_UPDATES
# docs/protocol.md §5.4 step 2: a username ending in `$<digits>` names a tenant.
_TENANT_SUFFIX: Final = re.compile(r"^(.*)(\$(\d+))$", re.DOTALL)
GLOBAL_TENANT_ID: Final = 1


def now_ms() -> int:
    return int(time.time() * 1000)


def split_tenant(username: str) -> tuple[str, int | None]:
    """Split ``user$5`` into (``user``, 5); a bare name gives (name, None)."""
    m = _TENANT_SUFFIX.match(username)
    if not m:
        return username, None
    return m.group(1), int(m.group(3))


def station_request(
    payload: bytes, spec: Spec, struct: str, field: str = "station_name"
) -> tuple[dict[str, Any], str] | bytes:
    """Decode a request about the station named in ``field``, for a plain-text reply.

    Returns the request and the station's name lower-cased (docs/protocol.md §5.1), or the reply
    that ends the request: the decode error's text, or the name rule it breaks.
    """
    try:
        req = decode(payload, spec, struct)
    except GoJSONError as exc:
        return str(exc).encode()
    name = str(req[field]).lower()
    err = name_error(name, "Station")
    if err:
        return err.encode()
    return req, name


@dataclass
class Context:
    """Shared handler state. ``users`` None means token mode: any username is accepted."""

    nc: Client
    js: JetStreamContext
    api: JSApi
    store: Store
    users: frozenset[str] | None

    def user_exists(self, username: str) -> bool:
        """Token mode has no user database (docs/protocol.md §10.3 keeps only the token); password
        mode knows the
        configured users. The broker lower-cases usernames (docs/protocol.md §10.1)."""
        if self.users is None:
            return True
        return username.lower() in self.users

    async def station(self, ext: str) -> dict[str, Any] | None:
        got = await self.store.stations.get(key(ext))
        return got[0] if got else None

    async def publish_json(self, subject: str, doc: object) -> None:
        await self.nc.publish(subject, encode(doc))
