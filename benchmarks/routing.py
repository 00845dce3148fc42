"""Top-1 routing accuracy of the embedding selector on labelled questions, offline.

It loads the real sentence encoder in process (no app, no server), builds the selector from
the specialists of a Serve config, and asks it to rank every specialist for each question of
a labelled set:

- MT-Bench's 80 first turns, labelled by category (`ROUTES` below);
- GSM8K questions, labelled qwen-math; HumanEval prompts and MBPP tasks, labelled qwen-coder.

None of these questions is among the specialists' `examples`. Each source is split in two
halves by position: revise the examples looking only at the tuning half's misses (`--misses`),
and the held-out half says whether the revision generalises. It prints accuracy with a 95%
Wilson interval overall, per half, per source and per MT-Bench category, the confusion, and
leave-out checks: the same set routed with the description alone, with half of each
specialist's examples, and each example routed with itself left out of its own bank.

    python benchmarks/routing.py [--config serve_config.yaml] [--gsm8k N] [--humaneval N] [--mbpp N] [--misses]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from colm_serve.collab.context import RequestContext
from colm_serve.collab.selection import EmbeddingSelector, load_sentence_encoder
from colm_serve.config import AppArgs, SpecialistConfig
from colm_serve.deploy_config import APP_IMPORT_PATH

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "clients" / "eval" / "data"

# MT-Bench category -> the specialist whose description claims it.
ROUTES = {
    "math": "qwen-math",       # "Mathematics, arithmetic, algebra, probability, word problems"
    "coding": "qwen-coder",    # "Programming, code, algorithms, ..."
    "writing": "ds-creative",  # "Creative writing, stories, poems, essays, emails, marketing copy"
    "humanities": "ds-creative",  # "... and humanities" (economics, law, philosophy, history, arts)
    "roleplay": "gpt-conv",    # "... and role play"
    "reasoning": "gpt-conv",   # "... reasoning" (riddles and logic puzzles, some with small sums)
    "extraction": "gpt-conv",  # no description names it; the general assistant reads and extracts
    "stem": "gpt-conv",        # "explanations, ... knowledge questions" (science, engineering)
}
CHECKABLE = {"gsm8k": ("question", "qwen-math"), "humaneval": ("prompt", "qwen-coder"), "mbpp": ("text", "qwen-coder")}


@dataclass(frozen=True)
class Labelled:
    source: str  # mt-bench, gsm8k, humaneval, mbpp
    category: str  # MT-Bench's category; the source for the others
    question: str
    want: str
    tuning: bool  # in the half whose misses one may look at when writing examples


@dataclass(frozen=True)
class Rate:
    hits: int
    n: int

    def line(self) -> str:
        low, high = wilson(self.hits, self.n)
        return f"{self.hits:>4}/{self.n:<4} {100 * self.hits / self.n:5.1f}%  [{100 * low:5.1f}, {100 * high:5.1f}]"


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval: honest near 0% and 100%, where the normal one is not."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def specialists_of(config: Path) -> tuple[list[SpecialistConfig], str]:
    """The specialists and embedding model of the one CoLM app in a Serve config, via AppArgs."""
    doc = yaml.safe_load(config.read_text())
    apps = [a for a in doc.get("applications", []) if a.get("import_path") == APP_IMPORT_PATH]
    if len(apps) != 1:
        raise SystemExit(f"{config}: expected one application with import_path {APP_IMPORT_PATH}, found {len(apps)}")
    args = AppArgs.model_validate(apps[0].get("args") or {})
    return args.specialists, args.selection.embedding_model


def labelled_set(*, limits: dict[str, int | None], known: set[str], wait_s: float) -> list[Labelled]:
    rows = [json.loads(line) for line in (DATA / "mt_bench_questions.jsonl").read_text().splitlines() if line.strip()]
    raw = [("mt-bench", r["category"], r["turns"][0], ROUTES[r["category"]]) for r in rows]
    for source, (field, want) in CHECKABLE.items():
        path = DATA / "checkable" / f"{source}.jsonl"
        _wait_for(path, wait_s)
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        raw += [(source, source, r[field], want) for r in rows[: limits.get(source)]]
    seen: Counter = Counter()  # position within (source, category): even ones form the tuning half
    found = []
    for source, category, question, want in raw:
        found.append(Labelled(source, category, question, want, tuning=seen[source, category] % 2 == 0))
        seen[source, category] += 1
    unknown = {item.want for item in found} - known
    if unknown:
        raise SystemExit(f"labels {sorted(unknown)} are not specialists of the config; known: {sorted(known)}")
    return found


def _wait_for(path: Path, wait_s: float) -> None:
    """The checkable sets are vendored by `clients/eval`; a fresh checkout may still be writing them."""
    deadline = time.monotonic() + wait_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path}: missing")
        time.sleep(5)


class Remembering:
    """The real encoder, remembering each text's vector: the leave-out checks route the same set again."""

    def __init__(self, model: str) -> None:
        self._encoder, self._seen = load_sentence_encoder(model), {}

    def encode(self, texts: list[str], normalize_embeddings: bool = True) -> list:
        new = list(dict.fromkeys(t for t in texts if t not in self._seen))
        if new:
            self._seen.update(zip(new, self._encoder.encode(new, normalize_embeddings=normalize_embeddings)))
        return [self._seen[t] for t in texts]


async def route(selector: EmbeddingSelector, specialists: list[SpecialistConfig], questions: list[str]) -> list[str]:
    """The first-ranked specialist per question; concurrent, so the selector batches the encodes."""
    ranked = await asyncio.gather(*(selector.rank(q, specialists, 1, RequestContext()) for q in questions))
    return [sel.names[0] for sel in ranked]


def report(items: list[Labelled], got: list[str], names: list[str]) -> None:
    def rate(keep) -> Rate:
        pairs = [(i, g) for i, g in zip(items, got) if keep(i)]
        return Rate(sum(i.want == g for i, g in pairs), len(pairs))

    print("top-1 accuracy                        hits/n    acc    95% Wilson")
    print(f"  all                                 {rate(lambda i: True).line()}")
    print(f"  tuning half (even positions)        {rate(lambda i: i.tuning).line()}")
    print(f"  held-out half (odd positions)       {rate(lambda i: not i.tuning).line()}")
    for source in dict.fromkeys(i.source for i in items):
        print(f"  {source:<35} {rate(lambda i: i.source == source).line()}")
    print("  mt-bench by category")
    for category, want in ROUTES.items():
        label = f"{category} -> {want}"
        print(f"    {label:<33} {rate(lambda i: i.source == 'mt-bench' and i.category == category).line()}")
    print("\nconfusion: rows labelled, columns routed first")
    groups = [(f"{c} ({w})", lambda i, c=c: i.source == "mt-bench" and i.category == c) for c, w in ROUTES.items()]
    groups += [(f"{s} ({w})", lambda i, s=s: i.source == s) for s, (_, w) in CHECKABLE.items()]
    width, label_width = max(map(len, names)) + 2, max(len(label) for label, _ in groups)
    print(" " * (2 + label_width) + "".join(f"{n:>{width}}" for n in names))
    for label, keep in groups:
        counts = Counter(g for i, g in zip(items, got) if keep(i))
        if counts:
            print(f"  {label:<{label_width}}" + "".join(f"{counts[n]:>{width}}" for n in names))


def with_examples(specialists: list[SpecialistConfig], pick) -> list[SpecialistConfig]:
    return [s.model_copy(update={"examples": pick(s.examples)}) for s in specialists]


async def leave_out(selector: EmbeddingSelector, specialists: list[SpecialistConfig], items: list[Labelled]) -> None:
    """Does the figure hinge on a few examples? Route the same set with fewer of them."""
    questions = [i.question for i in items]
    mt = [n for n, i in enumerate(items) if i.source == "mt-bench"]
    variants = {
        "description only (no examples)": with_examples(specialists, lambda ex: []),
        "even-numbered examples only": with_examples(specialists, lambda ex: ex[0::2]),
        "odd-numbered examples only": with_examples(specialists, lambda ex: ex[1::2]),
    }
    print("\nleave-out checks                      all                          mt-bench")
    for label, specs in variants.items():
        got = await route(selector, specs, questions)
        hits = [items[n].want == g for n, g in enumerate(got)]
        print(f"  {label:<35} {Rate(sum(hits), len(hits)).line()}   {Rate(sum(hits[n] for n in mt), len(mt)).line()}")
    hits = 0
    examples = [(s.name, n) for s in specialists for n in range(len(s.examples))]
    for name, n in examples:  # each example, with itself left out of its own specialist's bank
        specs = [s.model_copy(update={"examples": s.examples[:n] + s.examples[n + 1:]}) if s.name == name else s
                 for s in specialists]
        own = next(s for s in specialists if s.name == name).examples[n]
        hits += (await route(selector, specs, [own]))[0] == name
    if examples:
        print(f"  {'each example, left out of its bank':<35} {Rate(hits, len(examples)).line()}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "serve_config.yaml")
    parser.add_argument("--gsm8k", type=int, default=0, help="GSM8K questions, the first N in file order (0: all)")
    parser.add_argument("--humaneval", type=int, default=0, help="HumanEval prompts (0: all)")
    parser.add_argument("--mbpp", type=int, default=0, help="MBPP tasks (0: all)")
    parser.add_argument("--neighbours", type=int, default=3, help="nearest bank texts averaged per specialist")
    parser.add_argument("--misses", action="store_true", help="print the tuning half's misses, with the scores")
    parser.add_argument("--wait-s", type=float, default=0, help="how long to wait for the checkable sets to appear")
    opts = parser.parse_args()

    specialists, model = specialists_of(opts.config)
    limits = {"gsm8k": opts.gsm8k or None, "humaneval": opts.humaneval or None, "mbpp": opts.mbpp or None}
    items = labelled_set(limits=limits, known={s.name for s in specialists}, wait_s=opts.wait_s)
    selector = EmbeddingSelector(model=model, encoder_factory=Remembering, neighbours=opts.neighbours)
    t0 = time.perf_counter()
    selector.warm()
    loaded = time.perf_counter() - t0

    sizes = ", ".join(f"{s}: {n}" for s, n in Counter(i.source for i in items).items())
    banks = ", ".join(f"{s.name} {len(s.examples)}" for s in specialists)
    print(f"config {opts.config.relative_to(ROOT) if opts.config.is_relative_to(ROOT) else opts.config}; "
          f"encoder {model}; {opts.neighbours} nearest bank texts per specialist")
    print(f"examples per specialist: {banks}")
    print(f"set: {len(items)} questions ({sizes})\n")
    t0 = time.perf_counter()
    ranked = await asyncio.gather(*(selector.rank(i.question, specialists, 1, RequestContext()) for i in items))
    routed = time.perf_counter() - t0
    got = [sel.names[0] for sel in ranked]
    report(items, got, [s.name for s in specialists])
    if opts.misses:
        print("\ntuning half: misses")
        for item, sel in zip(items, ranked):
            if item.tuning and sel.names[0] != item.want:
                first_line = " ".join(item.question.split())[:100]
                print(f"  {item.source}/{item.category}: want {item.want}, got {sel.names[0]} {sel.scores}\n    {first_line}")
    await leave_out(selector, specialists, items)
    print(f"\nencoder load {loaded:.1f} s; {len(items)} questions routed in {routed:.1f} s")


if __name__ == "__main__":
    asyncio.run(main())
