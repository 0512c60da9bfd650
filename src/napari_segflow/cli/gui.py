"""``segflow gui``: open napari with a sample and the segflow widgets docked."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

#: Debian/Ubuntu packages Qt needs to open a window on Linux (the same list ``.ci/run``
#: installs, less its virtual screen). A machine without them aborts inside Qt.
QT_SYSTEM_PACKAGES = (
    "libegl1",
    "libdbus-1-3",
    "libxkbcommon-x11-0",
    "libxcb-icccm4",
    "libxcb-image0",
    "libxcb-keysyms1",
    "libxcb-randr0",
    "libxcb-render-util0",
    "libxcb-xinerama0",
    "libxcb-xinput0",
    "libxcb-xfixes0",
    "libxcb-shape0",
    "libxcb-cursor0",
)

# Creating a QApplication is where Qt aborts (SIGABRT) when its platform plugin cannot load,
# so it is tried in a child process first and a user gets a message instead of a core dump.
_PROBE = "from qtpy.QtWidgets import QApplication; QApplication([])"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open napari with a sample image and the Taxonomy widget")
    p.add_argument(
        "--sample", default="landsat", help="sample key: landsat or nuclei (default landsat)"
    )
    p.add_argument("--screenshot", help="save a screenshot of the window here and exit")
    p.set_defaults(func=run)


def qt_problem(*, timeout_s: float = 60.0) -> str | None:
    """Why Qt cannot open a window here (its own last words), or ``None`` when it can."""
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=os.environ.copy(),
        )
    except subprocess.TimeoutExpired:
        return None  # slow, not broken: let napari try
    if probe.returncode == 0:
        return None
    lines = [ln.strip() for ln in probe.stderr.splitlines() if ln.strip()]
    hints = [ln for ln in lines if "plugin" in ln.lower() or "xcb" in ln.lower()]
    return (hints or lines or [f"exit status {probe.returncode}"])[0]


def qt_help(problem: str) -> str:
    """The message ``segflow gui`` prints when Qt cannot start."""
    return (
        f"segflow: error: Qt cannot open a window: {problem}\n"
        "On Debian/Ubuntu install its system libraries:\n"
        f"  sudo apt-get install {' '.join(QT_SYSTEM_PACKAGES)}\n"
        "Without a screen (a server, CI), run under a virtual one: xvfb-run -a segflow gui"
    )


def run(args: argparse.Namespace) -> int:
    if sys.platform.startswith("linux"):
        problem = qt_problem()
        if problem is not None:
            print(qt_help(problem), file=sys.stderr)
            return 2

    import napari

    from napari_segflow._reader import prefer_segflow_readers

    prefer_segflow_readers()  # File > Open of .nii/.nii.gz goes to segflow without asking
    viewer = napari.Viewer(title="napari-segflow")
    viewer.open_sample("napari-segflow", args.sample)
    viewer.window.add_plugin_dock_widget("napari-segflow", "Taxonomy")
    if args.screenshot:
        viewer.screenshot(args.screenshot, canvas_only=False)
        viewer.close()
        return 0
    napari.run()
    return 0
