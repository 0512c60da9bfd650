"""Hostile and careless input: run ``segflow`` as a user would, with bounded memory and time.

``run_segflow`` starts the command in a child process whose address space is capped
(``RLIMIT_AS``) and which is killed after a timeout, so a runaway allocation or loop fails the
test instead of the machine. ``assert_refused`` checks what the user must see for a mistake: one
line ``segflow <command>: error: ...``, exit code 2, no traceback.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: Address-space cap of a child ``segflow`` (bytes): numpy, Pillow, GDAL and pycocotools fit
#: easily; a 9 GiB allocation from a lying header does not.
MEMORY_CAP = 3 << 30
#: Wall-clock cap of a child (seconds): every refusal here should take about a second.
TIME_CAP = 120


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_segflow(*args: object, cwd: Path | None = None, timeout: float = TIME_CAP) -> Run:
    """Run ``segflow ARGS`` in a child process with capped memory and time."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "napari_segflow.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_cap_memory,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0)


def error_lines(run: Run) -> list[str]:
    """stderr without library warnings (lines of ``warnings.warn`` and their source line)."""
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    out = []
    skip_next = False
    for ln in lines:
        if skip_next:
            skip_next = False
            continue
        if "Warning:" in ln and not ln.startswith("segflow"):
            skip_next = True  # the next line is the source line warnings print
            continue
        out.append(ln)
    return out


def assert_refused(run: Run, command: str, *fragments: str) -> str:
    """One line ``segflow <command>: error: ...`` holding ``fragments``, exit 2, no traceback."""
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == 2, (run.returncode, run.stdout[-2000:], run.stderr[-2000:])
    errors = [ln for ln in error_lines(run) if ln.startswith(f"segflow {command}: error:")]
    assert len(errors) == 1, run.stderr[-3000:]
    line = errors[0]
    for f in fragments:
        assert f in line, line
    assert len(line) < 700
    return line


def digest(path: Path) -> str:
    """Content hash of a file, or of every file under a folder (names included)."""
    h = hashlib.sha256()
    paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in paths:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def segflow():
    """The ``run_segflow`` helper as a fixture."""
    return run_segflow


@pytest.fixture
def refused():
    """The ``assert_refused`` check as a fixture."""
    return assert_refused


@pytest.fixture
def tree_digest():
    """The ``digest`` helper as a fixture: assert a source is intact after a command."""
    return digest
