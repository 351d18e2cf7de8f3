"""ml/ imports nothing of ours; app/ never imports workers/ or ml/ (import-linter contracts)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken" in result.stdout


def test_the_web_app_loads_no_model_code():
    """The one allowed app -> ml import (the prompt grammar) must not drag torch into the API."""
    code = (
        "import sys; from app.main import create_app; import app.prompts.grammar; "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'workers') if m in sys.modules]; "
        "print(','.join(heavy)); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"app imported {result.stdout.strip()} {result.stderr[-500:]}"
