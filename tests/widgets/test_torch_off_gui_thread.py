"""The GUI thread never imports torch: prepare_torch is cheap; the worker imports it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")

_PROBE = """
import sys, threading, time
from napari_segflow.widgets._torch import has_nvidia_gpu, prepare_torch, warm_up
t0 = time.perf_counter()
prepare_torch()
took = time.perf_counter() - t0
assert "torch" not in sys.modules, "prepare_torch imported torch"
assert took < 0.1, took
if not has_nvidia_gpu():
    assert sys.modules["triton"] is None  # hidden before torch can load it
box = {}
w = threading.Thread(target=lambda: box.setdefault("ok", warm_up() or "torch" in sys.modules))
w.start(); w.join()
assert box["ok"]
from napari_segflow.core.segment.threads import get_threads
assert sys.modules["torch"].get_num_threads() == get_threads()
print("ok")
"""


def test_prepare_torch_does_not_import_torch_and_the_worker_does():
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("ok")
