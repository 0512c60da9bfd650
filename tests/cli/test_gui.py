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
    # Qt's xcb platform plugin cannot load: no X display to connect to (as on a machine that
    # lacks the libraries, Qt aborts when it creates its application)
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_PLUGIN_PATH"):
        env.pop(var, None)
    env["QT_QPA_PLATFORM"] = "xcb"
    run = subprocess.run(
        # --screenshot: should Qt start after all, the command ends instead of waiting
        [
            sys.executable,
            "-m",
            "napari_segflow.cli",
            "gui",
            "--screenshot",
            str(tmp_path / "s.png"),
        ],
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
