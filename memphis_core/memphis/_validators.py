"""Schemaverse per-type machinery: lazy library imports, compilers and validators.

It holds everything that depends on *which* schema type a station uses:

* the lazy import helpers (:class:`MissingExtraError` names the ``memphis-sansio[schemas]``
  extra when protobuf, jsonschema, fastavro or graphql-core is missing; nothing outside the
  standard library is imported until a schema of that type is compiled);
* :func:`serialize_plain`, the encoding of messages for stations without a schema, which the
  JSON and GraphQL validators reuse;
* one compiler and one :class:`Validator` per schema type (docs/protocol.md §8.7, §8.8) and
  the :data:`VALIDATORS` table that ``_schemas.Schema`` picks from.

:class:`SchemaInit`, the broker's description of one schema version, lives here because it is
what a validator is compiled from; ``_schemas`` parses it off the wire and builds on this module
(never the reverse).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import importlib
import json
import re
import sys
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

from ._enums import SchemaType
from ._errors import MemphisSchemaError, MessageTypeError, MissingExtraError

__all__ = [
    "UNSUPPORTED",
    "VALIDATORS",
    "Invalid",
    "SchemaInit",
    "Validator",
    "avro_schema_problem",
    "best_effort_bytes",
    "compact_json",
    "serialize_plain",
]


@dataclass(frozen=True, slots=True)
class SchemaInit:
    """The ``init`` object of a schema update: one active schema version (docs/protocol.md §4.2).

    ``schema_type`` keeps the wire text; an unknown type is kept so that validation can fail
    with ``invalid schema type`` like the Go SDK instead of silently not validating.
    """

    schema_name: str
    schema_type: str
    version_number: int = 0
    descriptor: str = ""
    schema_content: str = ""
    message_struct_name: str = ""


_EXTRA: Final = "memphis-sansio[schemas]"
#: Error text for a message of a type no serialiser accepts (docs/protocol.md §8.8).
UNSUPPORTED: Final = "unsupported message type"


# ------------------------------------------------------------------------------ helpers


def _missing(library: str, exc: ImportError) -> MissingExtraError:
    return MissingExtraError(
        f"{library} is needed for this schema type but is not installed ({exc}); "
        f"install it with: pip install '{_EXTRA}'"
    )


def _import(module: str, library: str) -> Any:
    # Deliberately lazy: nothing outside the stdlib is imported until a schema of that type is
    # used, so ``memphis_core`` stays stdlib-only at import time (docs/protocol.md §8.7).
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(library, exc) from exc


def _loaded(module: str) -> Any:
    """The module if the *user* already imported it, else None (no import side effect).

    A protobuf message or a GraphQL ``DocumentNode`` can only exist if its library is loaded,
    so this recognises them without importing anything.
    """
    # Checking ``sys.modules`` instead of importing: a user who never imported protobuf cannot hold
    # a protobuf message, so the test costs nothing for stations without one.
    return sys.modules.get(module)


def _is_bytes_like(message: object) -> TypeGuard[bytes | bytearray | memoryview]:
    return isinstance(message, (bytes, bytearray, memoryview))


def _is_proto(message: object) -> bool:
    mod = _loaded("google.protobuf.message")
    return mod is not None and isinstance(message, mod.Message)


def _is_graphql_document(message: object) -> bool:
    mod = _loaded("graphql.language.ast")
    return mod is not None and isinstance(message, mod.DocumentNode)


def compact_json(value: object) -> bytes:
    """JSON as the reports and the JSON/Avro validators send it."""
    # Compact like Go's json.Marshal (docs/protocol.md §0.2), UTF-8 rather than \u escapes.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _jsonable(message: object) -> object | None:
    """The JSON value of a dict/list/dataclass instance, or None if not one of those."""
    if isinstance(message, (dict, list)):
        return message
    if dataclasses.is_dataclass(message) and not isinstance(message, type):
        return dataclasses.asdict(message)
    return None


def _unencodable(value: object, path: str, seen: set[int]) -> tuple[str, object] | None:
    """The first ``(path, value)`` in ``value`` that JSON cannot encode, or None."""
    if value is None or isinstance(value, (str, int, float)):
        return None
    if id(value) in seen:  # a cycle: json reports it itself, as a ValueError
        return None
    if isinstance(value, dict):
        seen.add(id(value))
        for key, item in value.items():
            where = f"{path}[{key!r}]"
            if not (key is None or isinstance(key, (str, int, float))):
                return f"key {key!r} of {path or 'the message'}", key
            found = _unencodable(item, where, seen)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        seen.add(id(value))
        for index, item in enumerate(value):
            found = _unencodable(item, f"{path}[{index}]", seen)
            if found is not None:
                return found
        return None
    return path or "the message", value


def serialize_plain(message: object) -> bytes:
    """Serialise a message for a station *without* a schema (docs/protocol.md §6.3).

    * bytes-like: as is;
    * ``str``: its UTF-8 text. The Go SDK JSON-quotes strings (``"hi"`` is sent as ``"\\"hi\\""``);
      we follow memphis-py and send the text itself, which is what a consumer in any language
      expects to read back;
    * ``dict``/``list``/dataclass instance: compact JSON;
    * protobuf message: ``SerializeToString()``.

    Raises:
        MessageTypeError: ``unsupported message type <type>`` for anything else (a
            ``TypeError`` and a ``MemphisSchemaError``).
        MessageTypeError: ``unsupported value type <type> at <path>`` when a dict, list or
            dataclass holds a value JSON cannot encode (a ``set``, a ``datetime``...), ``path``
            naming the key (``['when']``, ``['items'][2]``).
        MemphisSchemaError: ``Bad JSON format - <e>`` for what JSON refuses otherwise (a
            circular reference).
    """
    if _is_bytes_like(message):
        return bytes(message)
    if isinstance(message, str):
        return _encode_text(message)
    value = _jsonable(message)
    if value is not None:
        try:
            return compact_json(value)
        except TypeError:
            # A value of the wrong type, like ``object()`` as the whole message: the same typed
            # error, but json's text ("Object of type set ...") does not say where it is.
            found = _unencodable(value, "", set())
            if found is None:  # pragma: no cover - json raised for a value we accept
                raise
            path, bad = found
            raise MessageTypeError(
                f"unsupported value type {type(bad).__name__} at {path}: JSON encodes dict, "
                "list, str, int, float, bool and None (convert it first, e.g. to a list or an "
                "ISO 8601 string)"
            ) from None
        except (ValueError, RecursionError) as exc:
            raise MemphisSchemaError(f"Bad JSON format - {exc}") from None
    if _is_proto(message):
        return bytes(message.SerializeToString())  # type: ignore[attr-defined]
    raise MessageTypeError(
        f"{UNSUPPORTED} {type(message).__name__}: send bytes, str, a dict or list (JSON), a "
        "dataclass instance or a protobuf message"
    )


def _encode_text(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise MemphisSchemaError(f"message text is not valid UTF-8: {exc}") from None


def best_effort_bytes(message: object) -> bytes | None:
    """:func:`serialize_plain`, or None when the message has no plain form (for DLS reports)."""
    try:
        return serialize_plain(message)
    except MemphisSchemaError:
        return None


# ------------------------------------------------------------------------------ validators


class Validator:
    """One compiled schema: ``serialize`` (user message -> wire bytes) and ``deserialize``.

    Both raise ``Invalid(text)`` for a message that does not fit; ``_schemas.Schema`` adds the
    docs/protocol.md §11.1 prefixes.
    """

    def __init__(self, init: SchemaInit) -> None:
        raise NotImplementedError

    def serialize(self, message: object) -> bytes:
        raise NotImplementedError

    def deserialize(self, data: bytes) -> object:
        raise NotImplementedError


class Invalid(Exception):
    """A schema or message that does not fit: ``text`` without any prefix, ``data`` if known."""

    def __init__(self, text: str, data: bytes | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.data = data


# ------------------------------------------------------------------------------ compilers
#
# Each returns what its validator needs; schema problems raise ``Invalid`` (reported as
# ``Schema validation has failed: <why>``), a missing library raises MissingExtraError.

_ErrorsFn = Any  # (compiled schema, decoded value) -> error text or None


def _b64(descriptor: str) -> bytes:
    """Standard base64 (docs/protocol.md §8.4), tolerant of missing padding."""
    try:
        return base64.b64decode(descriptor + "=" * (-len(descriptor) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Invalid(f"invalid protobuf descriptor: {exc}") from None


def _proto_dependency(name: str, pb2: Any, pool_mod: Any) -> Any:
    # The broker runs protoc without --include_imports (docs/protocol.md §8.4), so imports such as
    # google/protobuf/timestamp.proto are absent from the set. Well-known types ship with the
    # protobuf runtime: importing their *_pb2 module registers them in the default pool.
    if name.startswith("google/protobuf/") and name.endswith(".proto"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name[:-6].replace("/", ".") + "_pb2")
    try:
        found = pool_mod.Default().FindFileByName(name)
    except KeyError:
        raise Invalid(f"protobuf import {name} is not in the schema descriptor") from None
    proto = pb2.FileDescriptorProto()
    found.CopyToProto(proto)
    return proto


def _compile_protobuf(init: SchemaInit) -> tuple[Any, Any, type[Exception]]:
    pb2 = _import("google.protobuf.descriptor_pb2", "protobuf")
    pool_mod = _import("google.protobuf.descriptor_pool", "protobuf")
    factory = _import("google.protobuf.message_factory", "protobuf")
    json_format = _import("google.protobuf.json_format", "protobuf")
    decode_error: type[Exception] = _import("google.protobuf.message", "protobuf").DecodeError
    if not init.descriptor:
        raise Invalid("protobuf schema has no descriptor")
    try:
        files = {f.name: f for f in pb2.FileDescriptorSet.FromString(_b64(init.descriptor)).file}
    except decode_error as exc:
        raise Invalid(f"invalid protobuf descriptor: {exc}") from None
    # A shared pool would refuse a second version of the same ``.proto`` file name with different
    # content, which is exactly what a schema update brings.
    pool = pool_mod.DescriptorPool()  # private pool: versions and stations never collide
    added: set[str] = set()

    def add(name: str, depth: int = 0) -> None:
        if name in added:
            return
        if depth > 100:
            raise Invalid("protobuf imports are nested too deeply")
        proto = files.get(name) or _proto_dependency(name, pb2, pool_mod)
        for dependency in proto.dependency:
            add(dependency, depth + 1)
        try:
            pool.Add(proto)
        except (TypeError, ValueError, KeyError) as exc:
            raise Invalid(f"invalid protobuf descriptor {name}: {exc}") from None
        added.add(name)

    # docs/protocol.md §8.4: the message lives in file ``<schema_name>_<version_number>.proto``.
    # The real broker names later versions' files ``_1.proto`` (docs/protocol.md §12.2 item 7), so
    # if that file is missing we look for the message in the other files rather than give up.
    wanted = f"{init.schema_name}_{init.version_number}.proto"
    # The wanted file first, then the others in their order (``sorted`` is stable): memphis-py takes
    # the first file, so a set with one file behaves the same in both SDKs.
    for name in sorted(files, key=lambda n: n != wanted):
        add(name)
        message = pool.FindFileByName(name).message_types_by_name.get(init.message_struct_name)
        if message is not None:
            return factory.GetMessageClass(message), json_format, decode_error
    raise Invalid(f"message {init.message_struct_name!r} not found in {wanted}")


def _compile_json_schema(init: SchemaInit) -> tuple[Any, _ErrorsFn]:
    jsonschema = _import("jsonschema", "jsonschema")
    try:
        schema = json.loads(init.schema_content)
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"invalid json schema: {exc}") from None
    if not isinstance(schema, (dict, bool)):
        raise Invalid("invalid json schema: not an object")
    # docs/protocol.md §8.7: without ``$schema`` the Go library uses draft 2020-12.
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise Invalid(f"invalid json schema: {exc.message}") from None

    def errors(validator: Any, value: object) -> str | None:
        try:
            error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        except Exception as exc:  # e.g. an unresolvable $ref: still "does not validate"
            return str(exc)
        if error is None:
            return None
        path = "/".join(str(p) for p in error.absolute_path)
        return f"{path}: {error.message}" if path else str(error.message)

    return cls(schema), errors


# fastavro ends many of its messages with the repr of the whole schema (or of the part being
# parsed): a wall of text that hides what is wrong.
_DICT_TAIL: Final = re.compile(r":? *\{.*\}\s*$", re.DOTALL)


def avro_schema_problem(text: str) -> str | None:
    """What is wrong with the Avro schema ``text`` (JSON), in one line; None if fastavro
    accepts it.

    The broker's ``create_schema`` check, the client's schema compile and the CLI all word it
    this way: fastavro's own text often ends with the repr of the whole schema.

    Raises:
        MissingExtraError: fastavro (the ``schemas`` extra) is not installed.
    """
    fastavro = _import("fastavro", "fastavro")
    try:
        schema = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return f"not JSON: {exc}"
    try:
        fastavro.parse_schema(schema)
    except Exception as exc:  # fastavro raises several unrelated types for a bad schema
        return _avro_message(exc)
    return None


def _avro_message(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else None
    if type(exc).__name__ == "UnknownType":
        # fastavro's UnknownType carries the type it could not resolve: a name, or (for a bad
        # "type" value inside a dict) the whole dict.
        if isinstance(arg, dict):
            where = f" in {arg['name']!r}" if isinstance(arg.get("name"), str) else ""
            return f"unknown type {arg.get('type')!r}{where}"
        return f"unknown type {arg!r}"
    short = _DICT_TAIL.sub("", str(exc)).strip()
    return short or type(exc).__name__


def _compile_avro(init: SchemaInit) -> tuple[Any, _ErrorsFn]:
    fastavro = _import("fastavro", "fastavro")
    validation = _import("fastavro.validation", "fastavro")
    problem = avro_schema_problem(init.schema_content)
    if problem is not None:
        raise Invalid(f"invalid Avro schema: {problem}")
    parsed = fastavro.parse_schema(json.loads(init.schema_content))

    def errors(schema: Any, value: object) -> str | None:
        try:
            validation.validate(value, schema, raise_errors=True)
        except validation.ValidationError as exc:
            return "; ".join(str(e) for e in exc.errors)
        except Exception as exc:  # a datum fastavro cannot even inspect
            return str(exc)
        return None

    return parsed, errors


def _compile_graphql(init: SchemaInit) -> Any:
    graphql = _import("graphql", "graphql-core")
    try:
        schema = graphql.build_schema(init.schema_content)
    except (graphql.GraphQLError, TypeError, RecursionError) as exc:
        raise Invalid(f"invalid GraphQL schema: {exc}") from None

    def check(text: str, data: bytes) -> None:
        # docs/protocol.md §8.8: the message is a query *document* validated against the schema.
        try:
            document = graphql.parse(text)
        except (graphql.GraphQLError, RecursionError):
            raise Invalid("invalid message format, expecting GraphQL", data) from None
        try:
            problems = graphql.validate(schema, document)
        except RecursionError:
            raise Invalid("query is nested too deeply", data) from None
        if problems:
            raise Invalid("; ".join(p.message for p in problems), data)

    return check


class _Protobuf(Validator):
    def __init__(self, init: SchemaInit) -> None:
        self._cls, self._json_format, self._decode_error = _compile_protobuf(init)

    def _parse(self, data: bytes) -> Any:
        try:
            message = self._cls.FromString(data)
        except self._decode_error:
            # docs/protocol.md §8.8: wire-format errors all become this one fixed text.
            raise Invalid("invalid message format, expecting protobuf", data) from None
        # Go's proto.Unmarshal rejects a proto2 message missing a required field; the Python
        # runtime parses it, so check explicitly to accept and refuse the same messages.
        if not message.IsInitialized():
            missing = ", ".join(message.FindInitializationErrors())
            raise Invalid(f"required field not set: {missing}", data)
        return message

    def serialize(self, message: object) -> bytes:
        if _is_bytes_like(message):
            data = bytes(message)
        elif _is_proto(message):
            # Partial: a missing required field is reported by _parse, in our words.
            data = bytes(message.SerializePartialToString())  # type: ignore[attr-defined]
        elif isinstance(message, dict):
            # docs/protocol.md §8.8: a map is read as protobuf JSON into the schema's message type.
            try:
                parsed = self._json_format.ParseDict(message, self._cls())
            except (
                self._json_format.ParseError,
                TypeError,
                ValueError,
                AttributeError,
                RecursionError,
            ) as exc:
                raise Invalid(str(exc), best_effort_bytes(message)) from None
            data = bytes(parsed.SerializePartialToString())
        else:
            raise Invalid(UNSUPPORTED, best_effort_bytes(message))
        # Bytes built from a message object are parsed back too: the same check then applies to
        # every input form, and required fields are reported in one wording.
        self._parse(data)
        return data

    def deserialize(self, data: bytes) -> object:
        return self._parse(data)


class _JsonSchema(Validator):
    def __init__(self, init: SchemaInit) -> None:
        self._validator, self._errors = _compile_json_schema(init)

    def _check(self, value: object, data: bytes) -> None:
        error = self._errors(self._validator, value)
        if error is not None:
            raise Invalid(error, data)

    def _loads(self, data: bytes, prefix: str) -> object:
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise Invalid(f"{prefix}{exc}", data) from None

    def serialize(self, message: object) -> bytes:
        # Bytes and text must already be JSON: they are validated as given and sent unchanged, so
        # the consumer reads back exactly what the producer passed (docs/protocol.md §8.8).
        if _is_bytes_like(message) or isinstance(message, str):
            data = serialize_plain(message)
            value = self._loads(data, "Bad JSON format - ")
        else:
            value = _jsonable(message)
            if value is None:
                raise Invalid(UNSUPPORTED, best_effort_bytes(message))
            try:
                data = compact_json(value)
            except (TypeError, ValueError, RecursionError) as exc:
                raise Invalid(f"Bad JSON format - {exc}") from None
        self._check(value, data)
        return data

    def deserialize(self, data: bytes) -> object:
        value = self._loads(data, "Bad JSON format - ")
        self._check(value, data)
        return value


class _Avro(_JsonSchema):
    """Avro records travel as JSON (docs/protocol.md §8.8); fastavro only validates."""

    def __init__(self, init: SchemaInit) -> None:  # own compiler, not _JsonSchema's
        self._validator, self._errors = _compile_avro(init)

    def serialize(self, message: object) -> bytes:
        if _is_bytes_like(message) or isinstance(message, str):
            # Avro values travel as JSON, not Avro binary, as every Memphis SDK sends them
            # (docs/protocol.md §8.8); fastavro only checks that the JSON value fits the schema.
            data = serialize_plain(message)
            value = self._loads(data, "Bad Avro format - ")
            self._check(value, data)
            return data
        return super().serialize(message)

    def deserialize(self, data: bytes) -> object:
        value = self._loads(data, "Bad Avro format - ")
        self._check(value, data)
        return value


class _GraphQL(Validator):
    def __init__(self, init: SchemaInit) -> None:
        self._check = _compile_graphql(init)

    def serialize(self, message: object) -> bytes:
        if _is_graphql_document(message):
            # Prefer the user's own text; print the AST only for documents built by hand.
            # The parsed source keeps the user's formatting and comments; printing the AST would
            # send a normalised query that differs from what the user wrote.
            loc = getattr(message, "loc", None)
            source = getattr(loc, "source", None)
            if source is not None:
                text = str(source.body)
            else:
                printer = _import("graphql.language.printer", "graphql-core")
                text = str(printer.print_ast(message))
        elif isinstance(message, str):
            text = message
        elif _is_bytes_like(message):
            try:
                text = bytes(message).decode("utf-8")
            except UnicodeDecodeError:
                raise Invalid("invalid message format, expecting GraphQL", bytes(message)) from None
        else:
            raise Invalid(UNSUPPORTED, best_effort_bytes(message))
        # docs/protocol.md §12.1 item 8: Go JSON-quotes a ``str`` here; we send the query text,
        # as for stations without a schema (see serialize_plain).
        data = _encode_text(text)
        self._check(text, data)
        return data

    def deserialize(self, data: bytes) -> object:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("invalid message format, expecting GraphQL", data) from None
        self._check(text, data)
        return text


VALIDATORS: Final[dict[str, type[Validator]]] = {
    SchemaType.PROTOBUF.value: _Protobuf,
    SchemaType.JSON.value: _JsonSchema,
    SchemaType.AVRO.value: _Avro,
    SchemaType.GRAPHQL.value: _GraphQL,
}
