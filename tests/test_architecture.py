"""The core stays GUI-free and light: checked by import-linter and by importing it for real."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def _core_modules() -> list[str]:
    mods = []
    for path in sorted((SRC / "napari_segflow" / "core").rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods.append(".".join(parts))
    return mods


def test_importing_core_loads_no_gui_and_no_heavy_library():
    code = (
        "import importlib, sys\n"
        f"for m in {_core_modules()!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(k for k in ('qtpy', 'PyQt6', 'PyQt5', 'napari', 'magicgui', 'torch', 'sam2', "
        "'rasterio', 'pycocotools', 'matplotlib') if k in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == ""


def test_import_linter_contract():
    out = subprocess.run(["lint-imports"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
