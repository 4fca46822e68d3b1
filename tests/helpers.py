"""Helpers shared by test modules (pytest puts this folder on sys.path)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_CONSOLE_SCRIPT = Path(sys.executable).with_name("gridsim")  # not resolved: the venv's bin


def gridsim(*args: str) -> subprocess.CompletedProcess:
    """Run the `gridsim` console script (or its entry point if not installed)."""
    if _CONSOLE_SCRIPT.exists():
        cmd = [str(_CONSOLE_SCRIPT)]
    else:
        cmd = [sys.executable, "-c", "from gridsim.cli.main import main; main()"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120)
