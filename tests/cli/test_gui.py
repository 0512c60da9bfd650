"""``segflow gui`` on a machine where Qt cannot load its platform plugin: a message naming the
system packages to install (the README's list, the one ``.ci/run`` installs), exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from napari_segflow.cli.gui import QT_SYSTEM_PACKAGES

REPO = Path(__file__).resolve().parents[2]


def test_gui_without_a_qt_platform_plugin_prints_the_packages(tmp_path):
    env = dict(os.environ)
    env["QT_QPA_PLATFORM_PLUGIN_PATH"] = str(tmp_path)  # no platform plugin can load
    env["QT_QPA_PLATFORM"] = "xcb"
    env.pop("QT_PLUGIN_PATH", None)
    run = subprocess.run(
        [sys.executable, "-m", "napari_segflow.cli", "gui"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.startswith("segflow: error: Qt cannot open a window")
    assert "sudo apt-get install " + " ".join(QT_SYSTEM_PACKAGES) in run.stderr
    assert "Traceback" not in run.stderr


def test_readme_and_ci_name_the_same_packages():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    for pkg in QT_SYSTEM_PACKAGES:
        assert pkg in readme, pkg
        assert pkg in ci, pkg
