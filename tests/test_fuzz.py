"""Property-based tests of the scenario loader and validator: any document either loads or
is refused with an `InputError`, a one-line message naming the file; nothing else escapes,
and no document raises the process's peak memory by more than `MEMORY_BOUND_KIB`.

2,000 generated documents in all, drawn deterministically (``derandomize``), so a failure
reproduces: a valid scenario changed in up to four places (keys, federates, types,
parameters, timing, links; values realistic or of any kind), so that documents reach every
stage of validation and some load and compile their feeder; and arbitrary text (YAML that
is broken, or not a mapping, or not text at all).
"""

from __future__ import annotations

import resource
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gridsim.components import builtin_types, load_definition
from gridsim.errors import InputError
from gridsim.wiring import load_federation

FUZZ = settings(max_examples=1000, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

TYPES = sorted(builtin_types())
PARAMETERS = sorted({p.port_id for path in builtin_types().values()
                     for p in load_definition(path).static_inputs})
PORTS = sorted({p.port_id for path in builtin_types().values()
                for d in [load_definition(path)] for p in (*d.dynamic_inputs,
                                                          *d.dynamic_outputs)})
NAMES = ["feeder", "recorder", "sensor", "estimator", "dopf", "market", "x", "9", ""]

scalars = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["15m", "1h", "24h", "10000d", "0s", "-5m", "ieee13", "ieee123",
                              "daily", "yearly", "central", "wls", "*", "feeder.*"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
link_text = st.builds(lambda a, p, b, q: f"{a}.{p} -> {b}.{q}", st.sampled_from(NAMES),
                      st.sampled_from([*PORTS, "*"]), st.sampled_from(NAMES),
                      st.sampled_from(PORTS))
BASE = {"name": "fuzz", "feeder": "ieee13", "duration": "1h", "step": "15m", "seed": 1,
        "federates": {"feeder": {"type": "feeder"}, "recorder": {"type": "recorder"}},
        "links": ["feeder.* -> recorder.subscription"]}
"""A valid scenario; generated ones change it in up to four places."""

TOP_KEYS = ["name", "feeder", "duration", "step", "seed", "start", "links", "timeout",
            "core_type", "time_coordination", "allow_long_run", "feeder_overlays",
            "components", "federates", "description", "unknown_key"]
realistic = (st.sampled_from(["15m", "1h", "24h", "10000d", "0s", "-5m", "7m", "ieee13",
                              "ieee123", "daily", "yearly", "central", "primal-dual", "wls",
                              "truth", "shapley", "global", "zmq", "tcp", "*", "feeder.*",
                              "2026-07-01T10:00:00", "missing.dss"])
             | st.integers(-5, 100) | st.floats(-2.0, 5.0))
mutation = st.one_of(
    st.tuples(st.just("top"), st.sampled_from(TOP_KEYS), realistic | values),
    st.tuples(st.just("drop"), st.sampled_from(TOP_KEYS), st.none()),
    st.tuples(st.just("add"), st.sampled_from(NAMES), st.sampled_from([*TYPES, "nope"])),
    st.tuples(st.just("type"), st.sampled_from(NAMES), st.sampled_from([*TYPES, "nope"])
              | values),
    st.tuples(st.just("param"), st.tuples(st.sampled_from(NAMES), st.sampled_from(PARAMETERS)),
              realistic | values),
    st.tuples(st.just("timing"), st.tuples(st.sampled_from(NAMES), st.sampled_from(
        ["period_steps", "offset_s", "event_driven", "after_inputs", "bogus"])),
              realistic | values),
    st.tuples(st.just("link"), st.integers(0, 3), link_text | values))


def mutate(changes: list) -> dict:
    """`BASE` with each change applied (a key set or dropped, a federate added or changed,
    a parameter, a timing field or a link set)."""
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    for kind, where, value in changes:
        federates = doc.get("federates")
        if kind == "top":
            doc[where] = value
        elif kind == "drop":
            doc.pop(where, None)
        elif not isinstance(federates, dict):
            continue
        elif kind in ("add", "type"):
            federates.setdefault(where, {})
            if isinstance(federates[where], dict):
                federates[where]["type"] = value
        elif kind in ("param", "timing"):
            name, key = where
            spec = federates.get(name)
            if isinstance(spec, dict):
                section = "parameters" if kind == "param" else "timing"
                if not isinstance(spec.get(section), dict):
                    spec[section] = {}
                spec[section][key] = value
        elif kind == "link" and isinstance(doc.get("links"), list):
            links = doc["links"]
            links[min(where, len(links)):min(where, len(links)) + 1] = [value]
    return doc


scenario = st.lists(mutation, max_size=4).map(mutate)

MEMORY_BOUND_KIB = 256 * 1024
"""How far one document may raise the process's peak resident memory."""


def check(path: Path) -> None:
    """Loads, or is refused in one line naming a file; within the memory bound."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load_federation(path)
        event("loaded")
    except InputError as exc:
        text = str(exc)
        assert text and "\n" not in text and "Traceback" not in text, text
        assert exc.source, text
        event(f"refused: {exc.field.split('.')[0].split('[')[0] or 'the file'}")
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < MEMORY_BOUND_KIB, f"{path.read_text()[:200]!r} took {grown} KiB more"


@FUZZ
@given(document=scenario)
def test_generated_scenarios_load_or_are_refused_in_one_line(document):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        try:
            path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
        except UnicodeEncodeError:  # lone surrogates: not a document anyone can write
            return
        check(path)


@FUZZ
@given(text=st.text(max_size=400) | st.binary(max_size=400).map(
    lambda b: b.decode("latin-1")), suffix=st.sampled_from([".yaml", ".json"]))
def test_arbitrary_text_is_refused_in_one_line(text, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))  # lone surrogates: not UTF-8
        check(path)
