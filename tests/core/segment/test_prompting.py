import pytest

from napari_segflow.core.segment.prompting import PromptSession


def test_only_the_wanted_embedding_is_kept():
    s = PromptSession()
    assert s.want("z=1")
    assert not s.want("z=1")  # already on its way
    assert s.want("z=2")  # the user moved on before it came
    old, new = object(), object()
    assert not s.offer("z=1", old)  # late result for the slice that was left
    assert s.embedding is None
    assert s.offer("z=2", new, model="the model")
    assert s.ready_for("z=2") and not s.ready_for("z=1")
    assert s.embedding is new and s.model == "the model"
    assert not s.want("z=2")  # at hand: nothing to compute


def test_abandon_and_predict_without_embedding():
    s = PromptSession()
    s.want("a")
    s.abandon("a")
    assert s.wanted is None and s.want("a")
    with pytest.raises(ValueError, match="no embedding"):
        s.predict(None, None, (0, 0, 4, 4))


def test_no_prompts_no_answer():
    s = PromptSession()
    s.want("a")
    s.offer("a", object())
    assert s.predict([], [], None) is None
    assert s.proposal is None and s.candidates is None and s.score is None
    assert s.next_candidate() == 0
