"""The one error type for bad user input: it names the file and the field."""

from __future__ import annotations


class InputError(Exception):
    """Bad input from a user file; reported as one line and exit code 2.

    Attributes:
        source: the file (or other origin) the bad input came from.
        field: dotted path of the offending field inside that file, or "" for the whole file.
        message: what is wrong, in words a user can act on.
    """

    def __init__(self, source: str, field: str, message: str):
        self.source = str(source)
        self.field = field
        self.message = " ".join(str(message).split())  # one line, whatever a library said
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.source}: {self.field}" if self.field else self.source
        return f"{where}: {self.message}"


def pydantic_field_path(loc: tuple, prefix: str = "") -> str:
    """Turn a pydantic error location into a dotted field path (list indices in brackets)."""
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts)


def from_validation_error(source: str, exc, prefix: str = "") -> InputError:
    """The first problem of a pydantic ValidationError as an InputError."""
    err = exc.errors()[0]
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "missing":
        msg = "required field is missing"
    return InputError(source, pydantic_field_path(tuple(err["loc"]), prefix), msg)
