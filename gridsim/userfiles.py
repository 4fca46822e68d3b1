"""Reading the files a user gives (scenario YAML or wiring JSON, component definitions): one
place for the limits every such file is held to, each failure an `InputError` (one line,
exit code 2).

- **Size:** at most `MAX_BYTES` on disk. Scenarios and definitions are a few kilobytes;
  the limit only stops a wrong file (a database, a feeder export) from being parsed.
- **Encoding:** UTF-8 text; a NUL byte means a binary file.
- **Expansion:** at most `MAX_VALUES` values once YAML aliases are expanded. PyYAML shares
  an alias's object instead of copying it, so an alias bomb (nine levels of nine aliases,
  a few hundred bytes) loads in microseconds; it explodes later, when the build writes
  the values out (3.9 GB before this check). The count walks the document as the build
  would and stops at the limit.
- **Nesting:** at most `MAX_DEPTH` levels (a deeper document is no scenario, and would
  overflow the parsers' recursion).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from gridsim.errors import InputError

MAX_BYTES = 4 * 1024 * 1024
MAX_VALUES = 1_000_000
MAX_DEPTH = 64


def read_text(path: Path, what: str) -> str:
    """The text of the user's file `path` (`what` it is, for the message), checked."""
    source = str(path)
    try:
        if not path.is_file():
            raise InputError(source, "", f"{what} not found" if not path.exists()
                             else f"{what} is not a regular file")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise InputError(source, "", f"{what} is {size:,} bytes; the limit is "
                                         f"{MAX_BYTES:,}")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(source, "", f"cannot read the {what}: {exc.strerror}") from None
    if b"\0" in data:
        raise InputError(source, "", f"{what} is a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(source, f"line {line}", "not UTF-8 text") from None


def parse_json(source: str, text: str) -> Any:
    """A JSON document, within the nesting and size limits."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(source, f"line {exc.lineno}", f"invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise InputError(source, "", "nested too deeply to read") from None
    check_expansion(source, raw)
    return raw


def parse_yaml(source: str, text: str, loader: type[yaml.SafeLoader]) -> Any:
    """A YAML document read by `loader` (a safe loader), within the limits."""
    try:
        raw = yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
        raise InputError(source, where, f"invalid YAML: {problem}") from None
    except RecursionError:
        raise InputError(source, "", "nested too deeply to read") from None
    check_expansion(source, raw)
    return raw


def check_expansion(source: str, document: Any) -> None:
    """Refuse a document with more than `MAX_VALUES` values or `MAX_DEPTH` levels once
    every shared (aliased) part is counted each time it appears."""
    count = 0
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise InputError(source, "", f"more than {MAX_VALUES:,} values once its YAML "
                                         f"aliases are expanded")
        if depth > MAX_DEPTH:
            raise InputError(source, "", f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            stack.extend((k, depth + 1) for k in value if isinstance(k, (tuple, dict, list)))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)
