"""Canonical bytes of JSON-able values: the only form that is ever signed or hashed.

The canonical form is JSON with keys sorted, no whitespace (separators ``,`` and ``:``),
non-ASCII characters written as themselves (``ensure_ascii=False``) and encoded in UTF-8.
Tuples are written as arrays. What JSON cannot say unambiguously is refused with a
`CanonicalError` instead of being coerced:

- NaN and infinities (not JSON);
- dictionary keys that are not strings (``json`` would turn ``1`` into ``"1"``, so
  ``{1: "a"}`` and ``{"1": "a"}`` would sign the same bytes);
- any other type (bytes, sets, objects): encode them first, e.g. bytes with `b64encode`;
- strings that are not valid Unicode (lone surrogates).

Floats are written by Python's shortest round-trip representation, which is deterministic
across platforms for the same value. Callers who need interoperability with other languages
should keep signed values to strings, integers and booleans (RFC 8785 writes floats the
ECMAScript way, which differs from Python's for some values, e.g. ``1e+16``).

Also here: strict base64 (RFC 4648 section 4, padding required, no other characters) and
SHA-256, shared by the other ledger modules.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from typing import Any

__all__ = ["CanonicalError", "b64decode", "b64encode", "canonical_bytes", "parse_canonical",
           "sha256"]


class CanonicalError(ValueError):
    """A value has no canonical JSON form, or bytes are not in canonical form."""


def _check(value: Any, where: str) -> None:
    """Raise `CanonicalError` if `value` (at JSON path `where`) has no canonical form."""
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CanonicalError(f"{where}: {value!r} is not a finite number")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError(f"{where}: key {key!r} is not a string")
            _check(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]")
        return
    raise CanonicalError(f"{where}: {type(value).__name__} is not JSON-able")


def canonical_bytes(value: Any) -> bytes:
    """The canonical UTF-8 JSON bytes of `value` (see the module docstring).

    Raises:
        CanonicalError: `value` holds NaN or infinity, a non-string key, a type JSON does
            not have, or a string that cannot be encoded in UTF-8.
    """
    _check(value, "$")
    return _dump(value)


def _dump(value: Any) -> bytes:
    """Canonical bytes of a value already known to hold only JSON types."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalError(f"$: string is not valid Unicode ({exc.reason})") from exc


def parse_canonical(data: bytes) -> Any:
    """Parse bytes that must already be canonical; the value they encode.

    Raises:
        CanonicalError: `data` is not UTF-8 JSON, or is JSON but not in canonical form
            (other key order, whitespace, escapes, duplicate keys, NaN).
    """
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CanonicalError(f"not canonical JSON: {exc}") from exc
    if _dump(value) != data:
        raise CanonicalError("JSON is not in canonical form")
    return value


def _refuse_constant(name: str) -> Any:
    """`json.loads` hook: NaN and infinities are not JSON."""
    raise CanonicalError(f"{name} is not JSON")


def b64encode(data: bytes) -> str:
    """Standard base64 (RFC 4648 section 4) of `data`, with padding."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, size: int | None = None) -> bytes:
    """Decode strict standard base64; if `size` is given, the result must have that length.

    Raises:
        CanonicalError: characters outside the alphabet, bad padding, a non-canonical
            encoding (it would not encode back to `text`) or the wrong length.
    """
    if not isinstance(text, str):
        raise CanonicalError(f"base64 value is a {type(text).__name__}, not a string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise CanonicalError(f"invalid base64: {exc}") from exc
    if b64encode(data) != text:
        raise CanonicalError("base64 is not in canonical form")
    if size is not None and len(data) != size:
        raise CanonicalError(f"expected {size} bytes, got {len(data)}")
    return data


def sha256(data: bytes) -> bytes:
    """SHA-256 digest of `data` (32 bytes)."""
    return hashlib.sha256(data).digest()
