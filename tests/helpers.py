"""Helpers shared by test modules (pytest puts this folder on sys.path)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent

_CONSOLE_SCRIPT = Path(sys.executable).with_name("gridsim")  # not resolved: the venv's bin


def bench_module(name: str):
    """A module of ``bench/`` (the distopf peer lives there, beside its benchmark)."""
    import importlib

    folder = str(REPO_ROOT / "bench")
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module(name)


def gridsim(*args: str) -> subprocess.CompletedProcess:
    """Run the `gridsim` console script (or its entry point if not installed)."""
    if _CONSOLE_SCRIPT.exists():
        cmd = [str(_CONSOLE_SCRIPT)]
    else:
        cmd = [sys.executable, "-c", "from gridsim.cli.main import main; main()"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120)


def scenario_data(name: str) -> dict:
    """Bundled scenario `name` as a dict to change, its feeder overlays made absolute so
    that a copy written anywhere still finds them."""
    data = yaml.safe_load((REPO_ROOT / "scenarios" / f"{name}.yaml").read_text())
    if "feeder_overlays" in data:
        data["feeder_overlays"] = [str(REPO_ROOT / "scenarios" / p)
                                   for p in data["feeder_overlays"]]
    return data
