"""Scenarios: the feeder, the clock, the seed, the federates and their links.

A scenario is written in YAML (``scenarios/*.yaml``) or as OEDI-SI-shaped wiring JSON
(``system.json``: ``name``, ``components``, ``links``, plus gridsim's ``scenario`` block). Both
load into the same `Scenario`; `gridsim.wiring` then checks it against the component
definitions. Times may be numbers of seconds or strings such as ``"15m"``, ``"24h"``, ``"1d"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gridsim.components import Timing
from gridsim.errors import InputError, from_validation_error
from gridsim.userfiles import parse_json, parse_yaml, read_text

_UNITS_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_LINK_TEXT = re.compile(r"^\s*([\w\-]+)\.([\w\-*]+)\s*->\s*([\w\-]+)\.([\w\-]+)\s*$")


def parse_seconds(value: Any) -> float:
    """A duration in seconds from a number or a string such as '15m' or '1.5h'."""
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite duration, got {value!r}")
        return float(value)
    match = re.fullmatch(r"\s*([0-9.]+)\s*(s|min|m|h|d)?\s*", str(value))
    if not match:
        raise ValueError(f"expected a duration such as 900, '15m' or '24h', got {value!r}")
    return float(match.group(1)) * _UNITS_S[match.group(2) or "s"]


class Link(BaseModel):
    """A connection from one federate's output port to another's input port."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    source_port: str
    target: str
    target_port: str

    @classmethod
    def parse(cls, value: Any) -> Link:
        """From a mapping, or from text 'feeder.voltages_magnitude -> recorder.subscription'."""
        if isinstance(value, str):
            match = _LINK_TEXT.match(value)
            if not match:
                raise ValueError(f"expected 'source.port -> target.port', got {value!r}")
            return cls(**dict(zip(("source", "source_port", "target", "target_port"),
                                  match.groups())))
        return cls.model_validate(value)

    def __str__(self) -> str:
        return f"{self.source}.{self.source_port} -> {self.target}.{self.target_port}"


class FederateSpec(BaseModel):
    """One federate of a scenario: its type, parameters and optional timing override."""

    model_config = ConfigDict(extra="forbid")

    type: str
    parameters: dict[str, Any] = {}
    timing: Timing | None = None


class Scenario(BaseModel):
    """A whole co-simulation, before validation against the component definitions."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[\w\-]+$")
    description: str = ""
    feeder: str = Field(description="Bundled feeder name (e.g. 'ieee123') or master file path.")
    feeder_overlays: list[str] = Field(
        [], description="OpenDSS scripts run after the feeder's own (paths relative to the "
                        "scenario), e.g. other regulator settings for this scenario.")
    start: datetime = datetime(2026, 7, 1)
    duration_s: float = Field(gt=0)
    step_s: float = Field(gt=0)
    seed: int = 0
    core_type: Literal["zmq", "zmq_ss", "tcp", "tcp_ss", "ipc"] = "zmq"
    time_coordination: Literal["auto", "global", "distributed"] = Field(
        "auto", description="HELICS's time coordinator: 'global' (the broker grants every "
                            "federate's time), 'distributed' (HELICS's default), or 'auto': "
                            "global when federates feed each other in a loop, else "
                            "distributed.")
    timeout_s: float | None = Field(None, gt=0, description="Wall-clock limit of a run.")
    allow_long_run: bool = Field(
        False, description="Run even when steps x nodes is over the limit a run may have "
                           "without saying so (federates/feeder/checks.py).")
    components: dict[str, str] = Field(
        {}, description="Extra federate types: type name -> component_definition.json path."
    )
    federates: dict[str, FederateSpec]
    links: list[Link] = []

    @field_validator("duration_s", "step_s", "timeout_s", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        return None if value is None else parse_seconds(value)

    @field_validator("links", mode="before")
    @classmethod
    def _links(cls, value: Any) -> Any:
        return [Link.parse(v) for v in value] if isinstance(value, list) else value

    @property
    def n_steps(self) -> int:
        """Number of feeder steps: times 0, step, ..., (n - 1) * step."""
        return int(round(self.duration_s / self.step_s))


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys instead of keeping the last one."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate name {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)

_YAML_ALIASES = {"duration": "duration_s", "step": "step_s", "timeout": "timeout_s"}
_SHORT_NAMES = {full: short for short, full in _YAML_ALIASES.items()}


def load_scenario(path: str | Path, settings: Sequence[str] = ()) -> Scenario:
    """Read a scenario YAML or a wiring JSON file, with command-line `settings`
    (``FIELD=VALUE``, `apply_settings`) applied; errors name the file and field."""
    path = Path(path)
    source = str(path)
    text = read_text(path, "scenario file")
    if path.suffix.lower() == ".json":
        raw = _json_document(source, text)
    else:
        raw = parse_yaml(source, text, _UniqueKeyLoader)
    if not isinstance(raw, dict):
        raise InputError(source, "", "expected a mapping at the top level")
    apply_settings(raw, settings)
    if path.suffix.lower() != ".json":
        raw = _short_names(source, raw)
    given_as = raw.pop("_given_as", [])
    if isinstance(raw.get("links"), list):
        for i, item in enumerate(raw["links"]):
            try:
                Link.parse(item)
            except (ValueError, ValidationError) as exc:
                detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else exc
                raise InputError(source, f"links[{i}]", str(detail)) from None
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        error = from_validation_error(source, exc)
        head, _, rest = error.field.partition(".")
        short = _SHORT_NAMES.get(head)
        if short and (short in given_as or (head not in raw and path.suffix != ".json")):
            error = InputError(source, ".".join(filter(None, [short, rest])), error.message)
        raise error from None


def _short_names(source: str, raw: dict) -> dict:
    """A YAML scenario's short names (``duration``, ``step``, ``timeout``) as the fields'
    own, remembering which were given short (for error messages)."""
    for short, full in _YAML_ALIASES.items():
        if short in raw:
            if full in raw:
                raise InputError(source, short, f"given twice (also as {full})")
            raw[full] = raw.pop(short)
            raw.setdefault("_given_as", []).append(short)
    return raw


def apply_settings(raw: dict, settings: Sequence[str]) -> None:
    """Apply ``FIELD=VALUE`` settings (``gridsim run --set``) to a scenario document, in
    order. FIELD is a dotted path of the document's keys (missing mappings are created:
    ``federates.feeder.parameters.pv_scale``); VALUE is read as YAML (``2`` a number,
    ``[a, b]`` a list, ``true`` a flag, anything else text). What results is validated
    exactly as if the file said it; a setting that cannot be applied is an `InputError`
    naming ``--set`` and the setting."""
    for setting in settings:
        field, sep, text = setting.partition("=")
        field = field.strip()
        if not sep or not field or any(not part for part in field.split(".")):
            raise InputError("--set", setting, "expected FIELD=VALUE, FIELD a dotted path "
                                               "such as federates.feeder.parameters.pv_scale")
        value = parse_yaml(f"--set {field}", text, yaml.SafeLoader) if text.strip() else None
        *parents, last = field.split(".")
        node: Any = raw
        for i, key in enumerate(parents):
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                raise InputError("--set", field, f"{'.'.join(parents[:i + 1])} is not a "
                                                 f"mapping in the scenario")
        node[last] = value


def _json_document(source: str, text: str) -> Any:
    """An OEDI-SI-shaped wiring file, turned into the scenario mapping."""
    raw = parse_json(source, text)
    if not isinstance(raw, dict):
        return raw
    if "scenario" not in raw:
        raise InputError(source, "scenario", "required field is missing (feeder, clock, seed)")
    if not isinstance(raw["scenario"], dict):
        raise InputError(source, "scenario", "expected a mapping")
    if not isinstance(raw.get("components", []), list):
        raise InputError(source, "components", "expected a list")
    for key in ("name", "federates", "links"):
        if key in raw["scenario"]:
            raise InputError(source, f"scenario.{key}", "belongs at the top level of the file")
    federates: dict[str, Any] = {}
    for i, component in enumerate(raw.get("components", [])):
        if not isinstance(component, dict) or "name" not in component:
            raise InputError(source, f"components[{i}].name", "required field is missing")
        name = component["name"]
        if name in federates:
            raise InputError(source, f"components[{i}].name", f"duplicate name {name!r}")
        federates[name] = {k: v for k, v in component.items() if k not in ("name", "host",
                                                                            "container_port")}
    return {"name": raw.get("name"), **raw["scenario"], "federates": federates,
            "links": raw.get("links", [])}
