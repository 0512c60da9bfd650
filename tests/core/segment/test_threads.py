"""The threads-per-call setting: default from the machine, environment, explicit, scoped."""

from __future__ import annotations

import pytest

from napari_segflow.core.segment import threads as th


def test_default_is_one_thread_on_small_machines_and_at_most_four():
    assert [th.default_threads(c) for c in (1, 2, 3, 4, 6, 8, 32)] == [1, 1, 1, 2, 3, 4, 4]
    assert 1 <= th.default_threads() <= 4


def test_environment_then_explicit_setting(monkeypatch):
    monkeypatch.setattr(th, "_threads", None)
    monkeypatch.setenv(th.THREADS_ENV, "3")
    assert th.get_threads() == 3
    monkeypatch.setenv(th.THREADS_ENV, "nonsense")
    assert th.get_threads() == th.default_threads()
    with th.using_threads(2):
        assert th.get_threads() == 2
    assert th.get_threads() == th.default_threads()  # back to unset, not frozen at a value
    with pytest.raises(ValueError, match="threads must be >= 1"):
        th.set_threads(0)


def test_torch_follows_the_setting(monkeypatch):
    import torch

    monkeypatch.setattr(th, "_threads", None)
    before = torch.get_num_threads()
    try:
        with th.using_threads(2):
            assert torch.get_num_threads() == 2
        with th.using_threads(1):
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
