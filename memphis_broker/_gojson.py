"""Decode request bodies the way the real broker's Go ``encoding/json`` does.

docs/protocol.md §0.2: keys match struct fields case-insensitively (the JS/Python SDKs
send ``dls_configuration.Schemaverse``, the Go SDK sends ``Title``/``Msg``), unknown keys are
ignored, missing keys become zero values, and a type mismatch is an error whose text is Go's own
(``json: cannot unmarshal string into Go struct field X.f of type int``). SDK acceptance rules
key on these texts only loosely, but tests and fuzzers compare them, so we mimic the format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Literal, Union

__all__ = ["FieldType", "GoJSONError", "Spec", "decode", "encode"]

FieldType = Union[Literal["string", "int", "int64", "uint64", "bool", "any"], "Spec"]
Spec = Mapping[str, FieldType]

# Go's int is 64-bit on every platform the broker ships for.
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_UINT64_MAX: Final = 2**64 - 1
_ZERO: Final[dict[str, Any]] = {"string": "", "int": 0, "int64": 0, "uint64": 0, "bool": False}


class GoJSONError(ValueError):
    """The body does not decode; ``str(err)`` is the Go error text."""


def _json_kind(value: object) -> str:
    # Go names the JSON side of a mismatch by its JSON kind ("string", "number 1.5", ...).
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return f"number {_go_number(value)}"
    if isinstance(value, list):
        return "array"
    return "object"


def _go_number(value: int | float) -> str:
    if isinstance(value, _GoFloat):
        return value.literal
    return repr(value)


class _GoFloat(float):
    """A JSON number with a fraction or exponent; Go refuses it for integer fields."""

    literal: str

    def __new__(cls, literal: str) -> _GoFloat:
        obj = super().__new__(cls, float(literal))
        obj.literal = literal
        return obj


def _syntax_error(text: str, err: json.JSONDecodeError) -> GoJSONError:
    # Go reports "unexpected end of JSON input" for truncation and "invalid character" otherwise.
    if err.pos >= len(text.rstrip()):
        return GoJSONError("unexpected end of JSON input")
    ch = text[err.pos]
    return GoJSONError(f"invalid character {ch!r} looking for beginning of value")


def _reject_constant(name: str) -> Any:
    # Python accepts NaN/Infinity; Go's decoder does not.
    raise ValueError(name)


def decode(payload: bytes, spec: Spec, struct: str) -> dict[str, Any]:
    """Decode ``payload`` into a dict with exactly the keys of ``spec`` (zero-filled).

    Raises:
        GoJSONError: malformed JSON or a type mismatch, with Go's message.
    """
    # Go replaces invalid UTF-8 with U+FFFD instead of failing.
    text = payload.decode("utf-8", errors="replace")
    if not text.strip():
        raise GoJSONError("unexpected end of JSON input")
    try:
        raw = json.loads(text, parse_constant=_reject_constant, parse_float=_GoFloat)
    except json.JSONDecodeError as err:
        raise _syntax_error(text, err) from None
    except RecursionError:
        raise GoJSONError("exceeded max depth") from None
    except ValueError as err:  # NaN / Infinity / -Infinity, refused by Go
        ch = str(err.args[0] if err.args else "N").lstrip("-")[:1] or "N"
        raise GoJSONError(f"invalid character {ch!r} looking for beginning of value") from None
    if raw is None:
        # json.Unmarshal of `null` into a struct is a no-op: every field keeps its zero value.
        return _zero(spec)
    if not isinstance(raw, dict):
        raise GoJSONError(
            f"json: cannot unmarshal {_json_kind(raw).split(' ')[0]} into Go value of type "
            f"models.{struct}"
        )
    errors: list[str] = []
    out = _decode_object(raw, spec, struct, "", errors)
    if errors:
        # Go keeps decoding after a type mismatch and returns the first one.
        raise GoJSONError(errors[0])
    return out


def _zero(spec: Spec) -> dict[str, Any]:
    return {k: (_zero(t) if not isinstance(t, str) else _ZERO.get(t)) for k, t in spec.items()}


def _decode_object(
    raw: dict[str, Any], spec: Spec, struct: str, path: str, errors: list[str]
) -> dict[str, Any]:
    out = _zero(spec)
    folded = {k.lower(): k for k in spec}
    for key, value in raw.items():
        # Exact match first, then Go's case-insensitive fallback; the last occurrence wins.
        field = key if key in spec else folded.get(key.lower())
        if field is None:
            continue
        ftype = spec[field]
        where = f"{path}{field}"
        if value is None:
            continue  # null leaves the zero value in place
        if not isinstance(ftype, str):
            if isinstance(value, dict):
                out[field] = _decode_object(value, ftype, struct, f"{where}.", errors)
            else:
                errors.append(_mismatch(value, struct, where, f"struct {{ {', '.join(ftype)} }}"))
            continue
        ok, converted = _convert(value, ftype)
        if ok:
            out[field] = converted
        else:
            errors.append(_mismatch(value, struct, where, ftype))
    return out


def _mismatch(value: object, struct: str, where: str, gotype: str) -> str:
    return (
        f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
        f"{struct}.{where} of type {gotype}"
    )


def _convert(value: object, ftype: str) -> tuple[bool, object]:
    if ftype == "any":
        return True, value
    if ftype == "string":
        return isinstance(value, str), value
    if ftype == "bool":
        return isinstance(value, bool), value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False, None
    if isinstance(value, float):
        # Go parses integer fields with ParseInt on the literal: "1.0" and "1e2" are refused.
        return False, None
    low, high = (0, _UINT64_MAX) if ftype == "uint64" else (_INT64_MIN, _INT64_MAX)
    if not low <= value <= high:
        return False, None
    return True, value


def encode(doc: object) -> bytes:
    """Encode like Go's ``json.Marshal``: compact, UTF-8, with ``<``, ``>``, ``&``, U+2028 and
    U+2029 escaped (docs/protocol.md §0 notes the escapes are harmless to decoders).
    """
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in _GO_ESCAPES:
        text = text.replace(ch, esc)
    return text.encode("utf-8", errors="replace")


_GO_ESCAPES: Final = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)
