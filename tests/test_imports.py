"""The import graph's rules (docs/architecture.md, "Import rules"):

1. HELICS is loaded only by `gridsim.runtime` and the federates' entry points
   (``federates/NAME/__main__.py``): importing every other module leaves ``helics`` out of
   ``sys.modules``, so numerics, adapters, loops and the CLI are testable without it.
2. The core (the ``gridsim/`` folder) imports nothing of ``gridsim.federates`` (not even the
   package) and not the CLI: it locates the federates' folder without importing it, and
   finds component definitions and ``parameter_check`` hooks by name.
3. A federate imports no other federate's modules: ``federates/NAME/*`` imports only
   ``gridsim.federates.NAME.*`` among the federates. Modules beside the federates (the
   offline chain) may use several.

Rules 2 and 3 are read from the source (every import statement, including those inside
functions), rule 1 from a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = {"gridsim": REPO / "gridsim", "gridsim.cli": REPO / "cli",
                "gridsim.federates": REPO / "federates", "gridsim.feeders": REPO / "feeders"}
HELICS_LOADERS = {"gridsim.runtime"}


def module_name(path: Path) -> str:
    """The import name of a source file of the distribution."""
    for package, folder in sorted(PACKAGE_DIRS.items(), key=lambda kv: -len(str(kv[1]))):
        if folder in path.parents or path.parent == folder:
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            return ".".join((package, *parts))
    raise ValueError(path)


def sources() -> dict[str, Path]:
    """Every module of the distribution by import name."""
    return {module_name(p): p for folder in PACKAGE_DIRS.values()
            for p in sorted(folder.rglob("*.py"))}


def imports_of(path: Path) -> set[str]:
    """Every module an import statement in `path` names (absolute imports only)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def is_entry_point(name: str) -> bool:
    return name.endswith(".__main__")


MODULES = sources()


def test_the_rules_see_every_package():
    """The walk finds the modules it must judge (a moved folder would empty the rules)."""
    assert "gridsim.runtime" in MODULES and "gridsim.loop" in MODULES
    assert "gridsim.federates.wls.federate" in MODULES
    assert "gridsim.federates.dopf.adapter" in MODULES
    assert "gridsim.cli.main" in MODULES


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.split(".")[1:2] not in (
    ["federates"], ["cli"], ["feeders"])))
def test_the_core_imports_no_federate_and_not_the_cli(name):
    bad = {i for i in imports_of(MODULES[name])
           if i == "gridsim.federates" or i.startswith(("gridsim.federates.", "gridsim.cli"))}
    assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES
                                        if n.startswith("gridsim.federates.")
                                        and n.count(".") >= 3))
def test_a_federate_imports_no_other_federate(name):
    own = ".".join(name.split(".")[:3])
    bad = {i for i in imports_of(MODULES[name])
           if i.startswith("gridsim.federates.") and not (i == own or i.startswith(own + "."))}
    assert not bad, f"{name} imports another federate's modules: {sorted(bad)}"


def test_only_the_runtime_and_the_entry_points_import_helics():
    importers = {name for name, path in MODULES.items()
                 if any(i == "helics" or i.startswith("helics.") for i in imports_of(path))}
    assert importers - HELICS_LOADERS == {n for n in importers if is_entry_point(n)}
    assert "gridsim.runtime" in importers


def test_importing_every_other_module_leaves_helics_unloaded():
    """In a fresh interpreter: import every module except the runtime and the entry points
    (the CLI included), then look."""
    names = sorted(n for n in MODULES if n not in HELICS_LOADERS and not is_entry_point(n))
    code = ("import importlib, json, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps([m for m in sys.modules if m == 'helics' "
            "or m.startswith('helics.')]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
