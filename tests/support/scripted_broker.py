"""A scripted broker for Client tests: reads what the client wrote, answers with server bytes.

No network and no clock: the test plays the server. :func:`parse_commands` turns the client's
bytes into :class:`Sent` records (CONNECT, PUB, HPUB, SUB, UNSUB, PING, PONG), and
:class:`Script` keeps the bookkeeping a server would (which sid each subject was subscribed
with) so that a test can answer a request, deliver to a pull's inbox, or push to a
subscription in one call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from memphis_core import (
    Client,
    ClientEvent,
    Connected,
    ConsumerState,
    Headers,
    ProducerState,
    connect_options,
    consumer_options,
    producer_options,
)
from memphis_core.nats._headers import encode_header_block
from tests.support.wire_vectors import server_hmsg, server_info, server_msg

__all__ = [
    "CONSUMER_REPLY",
    "INBOX",
    "INFO",
    "INFO_OK",
    "PRODUCER_REPLY",
    "Script",
    "Sent",
    "ack_subject",
    "connected",
    "consumer",
    "parse_commands",
    "producer",
    "pull_request",
    "pulls",
]

INBOX = "_INBOX.t"
INFO = {"server_id": "scripted", "version": "2.12.0", "max_payload": 1_048_576, "headers": True}


@dataclass
class Sent:
    """One command the client wrote."""

    op: str
    subject: str = ""
    reply: str | None = None
    sid: int = 0
    queue: str | None = None
    max_msgs: int | None = None
    headers: Headers | None = None
    payload: bytes = b""
    fields: dict[str, object] = field(default_factory=dict)

    def json(self) -> object:
        return json.loads(self.payload)


def parse_commands(data: bytes) -> list[Sent]:
    """Parse the client side of the NATS protocol (what the client writes)."""
    out: list[Sent] = []
    pos = 0
    while pos < len(data):
        eol = data.index(b"\r\n", pos)
        line = data[pos:eol].decode()
        pos = eol + 2
        op, _, rest = line.partition(" ")
        args = rest.split()
        if op in {"PING", "PONG"}:
            out.append(Sent(op))
        elif op == "CONNECT":
            out.append(Sent(op, fields=json.loads(rest)))
        elif op == "SUB":
            queue = args[1] if len(args) == 3 else None
            out.append(Sent(op, subject=args[0], queue=queue, sid=int(args[-1])))
        elif op == "UNSUB":
            max_msgs = int(args[1]) if len(args) == 2 else None
            out.append(Sent(op, sid=int(args[0]), max_msgs=max_msgs))
        elif op == "PUB":
            size = int(args[-1])
            reply = args[1] if len(args) == 3 else None
            out.append(Sent(op, subject=args[0], reply=reply, payload=data[pos : pos + size]))
            pos += size + 2
        elif op == "HPUB":
            hsize, total = int(args[-2]), int(args[-1])
            reply = args[1] if len(args) == 4 else None
            block = data[pos : pos + hsize]
            headers = Headers()
            for raw in block.split(b"\r\n")[1:]:
                if raw:
                    key, _, value = raw.decode().partition(":")
                    headers.add(key.strip(), value.strip())
            out.append(
                Sent(
                    op,
                    subject=args[0],
                    reply=reply,
                    headers=headers,
                    payload=data[pos + hsize : pos + total],
                )
            )
            pos += total + 2
        else:
            raise AssertionError(f"unknown client command {line!r}")
    return out


def ack_subject(stream: str, durable: str, seq: int, delivered: int = 1, pending: int = 0) -> str:
    """A JetStream ack subject as nats-server builds it for a pulled message; ``pending``: the
    messages the server still holds for the consumer after this one."""
    return f"$JS.ACK.{stream}.{durable}.{delivered}.{seq}.{seq}.1700000000000000000.{pending}"


class Script:
    """One Client and the server half of its conversation."""

    def __init__(self, **connect: object) -> None:
        connect = {"connection_token": "memphis", **connect}
        options = connect_options("localhost", "root", **connect)  # type: ignore[arg-type]
        self.client = Client(options, connection_id="cid", inbox_prefix=INBOX)
        self.now = 0.0
        self.sids: dict[str, int] = {}  # subject -> sid, as subscribed
        self.sent: list[Sent] = []

    # ------------------------------------------------------------ driving the client

    def connect(self) -> list[Sent]:
        """Run a handshake; return what the client sent during it."""
        self.client.connection_made(self.now)
        self.feed(server_info(INFO))
        sent = self.take()
        self.feed(b"PONG\r\n")
        return sent

    def feed(self, data: bytes) -> None:
        self.client.receive_data(data, self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.client.handle_timeout(self.now)

    def events(self) -> list[ClientEvent]:
        return self.client.events()

    def take(self) -> list[Sent]:
        """What the client wrote since the last call (subscriptions are remembered)."""
        sent = parse_commands(self.client.data_to_send())
        for command in sent:
            if command.op == "SUB":
                self.sids[command.subject] = command.sid
        self.sent += sent
        return sent

    def one(self, op: str, subject_prefix: str = "") -> Sent:
        """The single command of kind ``op`` (on a subject with that prefix) written since the
        last call; fail if there is not exactly one."""
        found = [s for s in self.take() if s.op == op and s.subject.startswith(subject_prefix)]
        assert len(found) == 1, f"expected one {op} {subject_prefix!r}, got {found}"
        return found[0]

    # ------------------------------------------------------------ answering

    def _sid_for(self, reply: str) -> int:
        if reply in self.sids:
            return self.sids[reply]  # a pull's own inbox
        return self.sids[f"{INBOX}.*"]  # the shared reply inbox

    def reply(self, request: Sent, payload: bytes | str | Mapping[str, object]) -> None:
        """Answer ``request`` on its reply subject."""
        assert request.reply is not None, f"{request} expects no reply"
        if isinstance(payload, Mapping):
            payload = json.dumps(dict(payload)).encode()
        elif isinstance(payload, str):
            payload = payload.encode()
        self.feed(server_msg(request.reply, self._sid_for(request.reply), None, payload))

    def no_streams(self) -> None:
        """Answer the ``STREAM.INFO`` lookups a ``create_station`` starts with: "stream not
        found", as for a station that does not exist yet."""
        missing = {"error": {"code": 404, "err_code": 10059, "description": "stream not found"}}
        for request in self.take():
            if request.subject.startswith("$JS.API.STREAM.INFO."):
                self.reply(request, missing)

    def status(self, request: Sent, code: int, description: str = "") -> None:
        """Answer ``request`` with a header-only status message (404, 408, 409, 503...)."""
        assert request.reply is not None
        block = f"NATS/1.0 {code} {description}\r\n\r\n".encode()
        self.feed(server_hmsg(request.reply, self._sid_for(request.reply), None, block, b""))

    def deliver(
        self, pull: Sent, stream: str, durable: str, seq: int, data: bytes, pending: int = 0
    ) -> str:
        """Deliver one stored message to a pull; return its ack subject."""
        self.feed(self.delivery(pull, stream, durable, seq, data, pending))
        return ack_subject(stream, durable, seq, pending=pending)

    def delivery(
        self, pull: Sent, stream: str, durable: str, seq: int, data: bytes, pending: int = 0
    ) -> bytes:
        """The bytes that deliver one stored message to a pull (to feed several in one read)."""
        assert pull.reply is not None
        ack = ack_subject(stream, durable, seq, pending=pending)
        block = encode_header_block({"$memphis_producedBy": "p", "user": "v"})
        return server_hmsg(f"{stream}.final", self.sids[pull.reply], ack, block, data)

    def push(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
        """A message on a subscription the client made (broker pushes, DLS resends)."""
        sid = self.sids[subject]
        if headers:
            self.feed(server_hmsg(subject, sid, None, encode_header_block(headers), payload))
        else:
            self.feed(server_msg(subject, sid, None, payload))


# ---------------------------------------------------------------- scenes the Client tests share

#: The control plane's replies to a producer / consumer creation, and a durable's info.
PRODUCER_REPLY = {
    "error": "",
    "partitions_update": {"partitions_list": [1, 2]},
    "schemaverse_to_dls": True,
    "send_notification": False,
    "station_version": 2,
}
CONSUMER_REPLY = {"error": "", "partitions_update": {"partitions_list": [1, 2]}}
INFO_OK = {"type": "io.nats.jetstream.api.v1.consumer_info_response", "name": "billing"}


def connected() -> Script:
    """A Script whose client finished its handshake (CONNECT, both SUBs, PING)."""
    script = Script()
    sent = script.connect()
    assert [s.op for s in sent] == ["CONNECT", "SUB", "SUB", "PING"]
    assert {s.subject for s in sent if s.op == "SUB"} == {
        f"{INBOX}.*",
        "$memphis_sdk_clients_updates",
    }
    assert isinstance(script.events()[-1], Connected)
    return script


def producer(script: Script, name: str = "web") -> ProducerState:
    """Producer ``name`` of station ``orders``, created through the scripted control plane."""
    op = script.client.create_producer(producer_options("orders", name), script.now)
    request = script.one("PUB", "$memphis_producer_creations")
    script.reply(request, PRODUCER_REPLY)
    assert op.done
    return op.outcome()


def consumer(script: Script, **options: object) -> ConsumerState:
    """Consumer ``billing`` of ``orders`` (2 partitions), created and its durables checked."""
    opts = consumer_options("orders", "billing", **options)  # type: ignore[arg-type]
    op = script.client.create_consumer(opts, script.now)
    script.reply(script.one("PUB", "$memphis_consumer_creations"), CONSUMER_REPLY)
    infos = [s for s in script.take() if s.subject.startswith("$JS.API.CONSUMER.INFO.")]
    assert sorted(s.subject for s in infos) == [
        "$JS.API.CONSUMER.INFO.orders$1.billing",
        "$JS.API.CONSUMER.INFO.orders$2.billing",
    ]
    assert not op.done  # every partition's durable must answer first
    for info in infos:
        script.reply(info, INFO_OK)
    assert op.done
    return op.outcome()


def pull_request(script: Script) -> Sent:
    """The pull the client just started: its inbox SUB and its MSG.NEXT request."""
    sent = script.take()
    pulls = [s for s in sent if s.subject.startswith("$JS.API.CONSUMER.MSG.NEXT.")]
    assert len(pulls) == 1, sent
    pull = pulls[0]
    assert pull.reply in script.sids, "a pull has an inbox subscription of its own"
    return pull


def pulls(script: Script) -> list[Sent]:
    """The pull requests (``MSG.NEXT``) among what the client wrote since the last take."""
    return [s for s in script.take() if s.subject.startswith("$JS.API.CONSUMER.MSG.NEXT.")]
