"""The type checker passes on app/ and workers/ (and what they import of ml/): `make lint` in CI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_finds_no_errors():
    exe = shutil.which("mypy") or str(Path(sys.executable).parent / "mypy")
    result = subprocess.run([exe, "app", "workers"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout
