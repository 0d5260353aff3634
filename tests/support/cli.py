"""Running the `orchestrator` command as an operator would, in a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# What a process needs from the developer's environment; nothing of the service's own.
_KEPT = {"PATH", "HOME", "LANG", "TMPDIR"}
COMMAND = [sys.executable, "-m", "project_orchestrator"]


def clean_environment(**overrides: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k in _KEPT}, **overrides}


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        env=clean_environment(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
