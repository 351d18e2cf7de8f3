"""ml/ imports nothing of ours; app/ never imports workers/ or ml/; inside app/ routers and pages sit
above services above the models (import-linter contracts), and no module of app/ imports itself back."""

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
    assert "Contracts: 3 kept, 0 broken" in result.stdout


def test_the_web_app_loads_no_model_code():
    """The one allowed app -> ml import (the prompt grammar) must not drag torch into the API."""
    code = (
        "import sys; from app.main import create_app; import app.prompts.grammar; "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'workers') if m in sys.modules]; "
        "print(','.join(heavy)); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"app imported {result.stdout.strip()} {result.stderr[-500:]}"


def test_no_module_of_the_app_imports_itself_back():
    """Import cycles (even through imports inside functions) tie layers together: errors.py once
    rendered pages through web.py -> auth/pages.py -> deps.py -> auth/service.py -> errors.py."""
    import grimp

    graph = grimp.build_graph("app", cache_dir=None)
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if i.startswith("app")}
             for m in graph.modules if m.startswith("app")}
    cycles = []
    for module in sorted(edges):
        # a cycle through `module`: something it imports leads back to it
        back = [i for i in sorted(edges[module])
                if graph.find_shortest_chain(importer=i, imported=module) is not None]
        if back:
            chain = graph.find_shortest_chain(importer=back[0], imported=module)
            cycles.append(" -> ".join((module, *(chain or ()))))
    assert not cycles, "\n".join(cycles)
