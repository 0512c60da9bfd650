"""Default worker count for pre-labelling: serial on small machines, bounded by memory and images."""

from __future__ import annotations

import doctest

import pytest

from napari_segflow.core.prelabel import workers
from napari_segflow.core.prelabel.workers import WORKER_BYTES, default_workers


@pytest.mark.parametrize(
    ("n_images", "cores", "memory", "threads", "expected"),
    [
        (1000, 1, 64 << 30, 1, 0),  # 1-3 cores: a worker never paid back on 2 cores
        (1000, 2, 64 << 30, 1, 0),
        (1000, 3, 64 << 30, 1, 0),
        (1000, 4, 64 << 30, 1, 2),  # one single-threaded worker per two cores
        (1000, 16, 64 << 30, 1, 8),
        (1000, 16, 64 << 30, 2, 4),  # two threads each: half as many
        (1000, 16, 3 * WORKER_BYTES, 1, 3),  # as many as memory holds
        (1000, 16, WORKER_BYTES, 1, 0),  # one would fit: serial instead
        (12, 16, 64 << 30, 1, 3),  # a quarter of the images at most
        (7, 16, 64 << 30, 1, 0),
    ],
)
def test_default_workers(n_images, cores, memory, threads, expected):
    assert default_workers(n_images, cores=cores, memory=memory, threads=threads) == expected


def test_this_machine_and_docstring():
    assert default_workers(1000) >= 0
    assert workers.available_memory() is None or workers.available_memory() > 0
    assert doctest.testmod(workers).failed == 0


def test_prelabel_cli_defaults_to_auto_workers():
    import argparse

    from napari_segflow.cli import prelabel

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    prelabel.register(sub)
    args = parser.parse_args(
        ["prelabel", "imgs", "--coarse", "c", "--taxonomy", "t", "--out", "o"]
    )
    assert args.workers is None
    help_text = sub.choices["prelabel"].format_help()
    assert "auto, from cores, memory and images" in " ".join(help_text.split())
