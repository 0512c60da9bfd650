"""core/atomic.create_once: one winner among creators, a complete file, no leftovers."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from napari_segflow.core.atomic import create_once


def test_one_of_many_racing_creators_wins_and_the_file_is_the_winners(tmp_path):
    path = tmp_path / "claim.json"
    results: dict[int, bool] = {}
    start = threading.Barrier(8)

    def create(i: int) -> None:
        start.wait()
        results[i] = create_once(path, f"writer {i}".encode() * 1000)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, won in results.items() if won]
    assert len(winners) == 1
    assert path.read_bytes() == f"writer {winners[0]}".encode() * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claim.json"]  # no temporary left


@pytest.mark.parametrize("code", [errno.EPERM, errno.EXDEV])
def test_without_hard_links_an_exclusive_create_decides(tmp_path, monkeypatch, code):
    def no_links(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "batch-1.json"
    assert create_once(path, b"first") is True
    assert create_once(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch-1.json"]


def test_other_errors_are_not_swallowed(tmp_path, monkeypatch):
    def denied(src, dst):
        raise PermissionError(errno.EACCES, "denied")

    monkeypatch.setattr(os, "link", denied)
    with pytest.raises(PermissionError):
        create_once(tmp_path / "x.json", b"data")
    assert list(tmp_path.iterdir()) == []
