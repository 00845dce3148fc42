"""Options parsing and the question pools."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from loadtest._questions import (
    PERSONAS,
    all_questions,
    persona_of_cluster,
    questions_for,
)
from loadtest._settings import DEFAULT_MIX, LoadSettings, parse_mix


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colm=6,colm-client=2,server/gpt-conv=2", {"colm": 6.0, "colm-client": 2.0, "server/gpt-conv": 2.0}),
        ("colm", {"colm": 1.0}),
        (" colm = 1 , server/qwen-math=0.5 ", {"colm": 1.0, "server/qwen-math": 0.5}),
        ("colm=1,colm-client=0", {"colm": 1.0, "colm-client": 0.0}),
    ],
)
def test_parse_mix(text, expected):
    assert parse_mix(text) == expected


@pytest.mark.parametrize("text", ["", "colm=x", "colm=0", "colm=-1,server/a=2", ","])
def test_parse_mix_rejects(text):
    with pytest.raises(ValueError, match="--colm-mix"):
        parse_mix(text)


def test_settings_from_ui_strings():
    """The web UI sends every option back as text."""
    s = LoadSettings(mix=DEFAULT_MIX, api_keys="k1, k2,,", iterations="", top_k="2", max_tokens="32")
    assert s.api_keys == ["k1", "k2"]
    assert s.iterations is None and s.top_k == 2 and s.max_tokens == 32


def test_colm_options_only_route_colm():
    s = LoadSettings(mix="colm", iterations=0, top_k=2, cache=False)
    assert s.colm_options("colm") == {"iterations": 0, "top_k": 2, "cache": False}
    assert s.colm_options("server/gpt-conv") == {"cache": False}
    assert LoadSettings(mix="colm").colm_options("colm") == {}


@pytest.mark.parametrize("bad", [{"think_min_s": 3, "think_max_s": 1}, {"stream_ratio": 1.5}, {"max_tokens": 0},
                                 {"unknown": 1}])
def test_settings_reject(bad):
    with pytest.raises(ValidationError):
        LoadSettings(mix="colm", **bad)


def test_question_sets():
    questions = all_questions()
    mt = [q for q in questions if q.source == "mt-bench"]
    arena = [q for q in questions if q.source == "arena-hard"]
    assert len(mt) == 80 and len(arena) == 100
    assert all(len(q.turns) == 2 for q in mt)
    assert all(q.turns[0].strip() for q in questions)
    for persona in PERSONAS:
        pool = questions_for(persona)
        assert len(pool) >= 20 and {q.persona for q in pool} == {persona}
    with pytest.raises(ValueError, match="unknown persona"):
        questions_for("poetry")


@pytest.mark.parametrize(("cluster", "persona"), [("Python Coding Challenges", "coding"),
                                                   ("Advanced Algebra and Number Theory", "math"),
                                                   ("Creative Story Writing", "writing"),
                                                   ("Healthy Meal Planning", "chat")])
def test_persona_of_cluster(cluster, persona):
    assert persona_of_cluster(cluster) == persona
