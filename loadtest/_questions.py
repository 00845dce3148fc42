"""Real question sets (MT-Bench, Arena-Hard) split into the personas' question pools.

MT-Bench has categories; Arena-Hard only has topic clusters, so a cluster goes to the
first persona whose keywords it contains, and to `chat` otherwise.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

PERSONAS = ("math", "coding", "writing", "chat")
DATA_DIR = Path(__file__).parent / "data"

MT_BENCH_PERSONA = {
    "math": "math",
    "reasoning": "math",
    "coding": "coding",
    "writing": "writing",
    "roleplay": "writing",
    "humanities": "writing",
    "stem": "chat",
    "extraction": "chat",
}

# Checked in this order; lower-case substrings of an Arena-Hard cluster name.
CLUSTER_KEYWORDS: dict[str, tuple[str, ...]] = {
    "math": ("math", "algebra", "probab", "calculat", "number", "geometr", "statist", "equation",
             "puzzle", "pi ", "deviation", "motion", "pricing", "proving", "root"),
    "coding": ("code", "coding", "program", "python", "java", "c++", "sql", "regex", "css", "api",
               "develop", "script", "software", "algorithm", "linux", "docker", "git", "web", "array",
               "typescript", "rust", "kotlin", "matplotlib", "pandas", "server", "database", "assembly",
               "shell", "excel", "vba", "react", "android", "html", "debug", "data", "cuda", "swift",
               "svg", "tkinter", "hdl", "aws", "gui", "ui "),
    "writing": ("writ", "story", "poem", "essay", "marketing", "email", "letter", "translat", "creative",
                "narrative", "slogan", "content", "blog", "literat", "poetry", "song", "music", "guitar",
                "character", "seo", "rpg"),
}


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(description="mt-bench or arena-hard")
    question_id: str
    category: str
    persona: str
    turns: tuple[str, ...] = Field(min_length=1)


def persona_of_cluster(cluster: str) -> str:
    name = cluster.lower()
    for persona, words in CLUSTER_KEYWORDS.items():
        if any(w in name for w in words):
            return persona
    return "chat"


def _read_jsonl(name: str) -> list[dict]:
    text = (DATA_DIR / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _mt_bench() -> list[Question]:
    return [
        Question(source="mt-bench", question_id=str(r["question_id"]), category=r["category"],
                 persona=MT_BENCH_PERSONA[r["category"]], turns=tuple(r["turns"]))
        for r in _read_jsonl("mt_bench_questions.jsonl")
    ]


def _arena_hard() -> list[Question]:
    return [
        Question(source="arena-hard", question_id=r["question_id"], category=r["cluster"],
                 persona=persona_of_cluster(r["cluster"]), turns=tuple(t["content"] for t in r["turns"]))
        for r in _read_jsonl("arena_hard_questions_100.jsonl")
    ]


@lru_cache(maxsize=1)
def all_questions() -> tuple[Question, ...]:
    return tuple(_mt_bench() + _arena_hard())


def questions_for(persona: str) -> tuple[Question, ...]:
    """The persona's pool, in file order (the user shuffles it with its own seeded RNG)."""
    if persona not in PERSONAS:
        raise ValueError(f"unknown persona {persona!r}; known: {list(PERSONAS)}")
    return tuple(q for q in all_questions() if q.persona == persona)
