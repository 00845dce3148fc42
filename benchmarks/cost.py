"""What a `colm` answer costs on servers, next to the server answering alone, per strategy.

One interleaved run against a running app (`make serve`) over a fixed sample of MT-Bench and
Arena-Hard first turns: for every question, every arm in a shuffled order: each strategy,
`colm` with no options (the default), `colm-client` and `server/<reference_server>`. All requests
stream (TTFT is the first answer token), the response cache is off, and the ratio is each
arm's summed server cost over the server alone's on the same questions.

Every arm is a server alone (`server/<name>` for each specialist, priced as configured) or
a client-model arm; the table gives each arm's cost over the reference server's and over the
cheapest server's.

--realistic-lengths writes every answer and every server step to a fixed length: the
server-alone answer to 470 tokens (GPT-4o's average on AlpacaEval 2.0, 1,873 characters;
`ignore_eos` upstream), each strategy's server step to its whole cap (the benchmark-only
X-Colm-Bench-Fill-Server-Caps header), and the client model's answer in the `colm` and
`colm-client` arms to the same 470 tokens (`min_tokens`), so a critique that reads the
draft reads a full-length one. The 135M stand-in writes short answers, which would flatter
nothing and prove nothing; this way the ratio is the worst case for CoLM.

    python benchmarks/cost.py --realistic-lengths [--questions 24] [--deadline-s 1800] [--png docs/cost.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai

from colm_serve.api.bench import FILL_SERVER_CAPS

DATA = Path(__file__).resolve().parents[1] / "clients" / "eval" / "data"
SERVER_ALONE_TOKENS = 470
CLIENT_CONTEXT_CHARS = 2000  # the 135M client model has a 2,048-token context; longer prompts cannot be served


@dataclass
class Answer:
    arm: str
    question: int
    cost_usd: float = 0.0
    server_tokens: int = 0
    client_tokens: int = 0
    latency_s: float = 0.0
    ttft_s: float | None = None
    escalated: bool | None = None
    error: str | None = None


@dataclass
class Arm:
    name: str
    model: str
    colm: dict | None = None
    extra: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)


def sample(n: int) -> list[str]:
    """Half MT-Bench (round-robin over its 8 categories), half Arena-Hard (evenly spaced), first
    turns that fit the client model's context. Fixed: the same questions every run."""
    mt = [json.loads(line) for line in (DATA / "mt_bench_questions.jsonl").read_text().splitlines() if line.strip()]
    by_category: dict[str, list[str]] = {}
    for row in mt:
        by_category.setdefault(row["category"], []).append(row["turns"][0])
    picked_mt = [q for group in zip(*by_category.values()) for q in group]
    arena = [json.loads(line)["turns"][0]["content"] for line in (DATA / "arena_hard_questions.jsonl").read_text().splitlines()
             if line.strip()]
    step = max(1, len(arena) // max(1, n - n // 2))
    picked_arena = arena[::step][: n - n // 2]
    kept = [q for q in picked_arena if len(q) <= CLIENT_CONTEXT_CHARS]
    if len(kept) < len(picked_arena):
        print(f"left out {len(picked_arena) - len(kept)} of {len(picked_arena)} Arena-Hard prompts over "
              f"{CLIENT_CONTEXT_CHARS} characters: with a 470-token answer they overflow the client model's context")
    return picked_mt[: n // 2] + kept


def arms(info: dict, *, realistic: bool) -> list[Arm]:
    fill = {FILL_SERVER_CAPS: "1"} if realistic else {}  # benchmark-only: every server step writes its whole cap
    found = [Arm(s["name"], "colm", {"strategy": s["name"]}, headers=fill) for s in info["strategies"]]
    found.append(Arm("colm (default)", "colm", headers=fill))
    found.append(Arm("colm-client", "colm-client"))
    if realistic:  # the client model's answer as long as the server alone's
        for arm in found:
            arm.extra = {"min_tokens": SERVER_ALONE_TOKENS}
    extra = {"ignore_eos": True} if realistic else {}
    reference = f"server/{info['reference_server']}"
    servers = sorted((m for m in info["models"] if m.startswith("server/")), key=lambda m: m != reference)
    found += [Arm(m, m, None, extra) for m in servers]  # the reference server first among them
    return found


async def ask(client: openai.AsyncOpenAI, arm: Arm, index: int, question: str, max_tokens: int,
              deadline_s: float) -> Answer:
    out, t0 = Answer(arm.name, index), time.perf_counter()
    common = {"cache": False, "deadline_s": deadline_s}
    body = {"colm": {**(arm.colm or {}), "trace": True, **common}} if arm.model == "colm" else {"colm": common}
    try:
        stream = await client.chat.completions.create(
            model=arm.model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens, stream=True,
            stream_options={"include_usage": True}, extra_body={**body, **arm.extra}, extra_headers=arm.headers or None)
        async for chunk in stream:
            if out.ttft_s is None and chunk.choices and chunk.choices[0].delta.content:
                out.ttft_s = time.perf_counter() - t0
            colm = (chunk.model_extra or {}).get("colm") or {}
            if "usage" in colm:  # the last chunk; progress chunks name their step here
                usage = colm["usage"]
                out.cost_usd, out.server_tokens, out.client_tokens = usage["cost_usd"], usage["server_tokens"], usage["client_tokens"]
                decisions = [d for d in colm.get("decisions", []) if d["step"] == "escalate"]
                out.escalated = decisions[0]["choice"] != "no" if decisions else None
    except openai.APIError as exc:
        out.error = f"{type(exc).__name__}: {exc}"[:200]
    out.latency_s = time.perf_counter() - t0
    return out


async def run(args: argparse.Namespace) -> tuple[list[Answer], list[str], str]:
    async with httpx.AsyncClient(timeout=30) as http:
        info = (await http.get(f"{args.base_url}/colm/strategies")).json()
        info["models"] = [m["id"] for m in (await http.get(f"{args.base_url}/models")).json()["data"]]
    client = openai.AsyncOpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=args.deadline_s + 60)
    chosen = arms(info, realistic=args.realistic_lengths)
    questions = sample(args.questions)
    rng, gate = random.Random(7), asyncio.Semaphore(args.concurrency)
    print(f"{len(questions)} questions x {len(chosen)} arms, {args.concurrency} at a time, "
          f"deadline {args.deadline_s:.0f} s, {'realistic lengths (server steps write their whole caps)' if args.realistic_lengths else 'natural lengths'}")

    async def question_round(index: int, question: str) -> list[Answer]:
        order = chosen[:]
        rng.shuffle(order)
        answers = []
        for arm in order:
            async with gate:
                limit = SERVER_ALONE_TOKENS if arm.model.startswith("server/") or args.realistic_lengths else args.max_tokens
                answers.append(await ask(client, arm, index, question, limit, args.deadline_s))
        return answers

    rounds = await asyncio.gather(*(question_round(i, q) for i, q in enumerate(questions)))
    return [a for answers in rounds for a in answers], [arm.name for arm in chosen], f"server/{info['reference_server']}"


def table(answers: list[Answer], order: list[str], reference: str) -> list[dict]:
    """One row per arm, in `order`: sums over the questions every arm answered, with the cost
    ratio to the reference server alone and to the cheapest server alone."""
    failed = {a.question for a in answers if a.error}
    good = [a for a in answers if a.question not in failed]
    cost = {name: sum(a.cost_usd for a in good if a.arm == name) for name in order}
    tokens = {name: sum(a.server_tokens for a in good if a.arm == name) for name in order}
    cheapest = min((n for n in order if n.startswith("server/")), key=lambda n: cost[n])
    rows = []
    for name in order:
        mine = [a for a in good if a.arm == name]
        if not mine:
            continue
        ttfts = [a.ttft_s for a in mine if a.ttft_s is not None]
        escalations = [a.escalated for a in mine if a.escalated is not None]
        rows.append({
            "arm": name, "answers": len(mine), "reference": name == reference, "cheapest": name == cheapest,
            "cost_per_answer": cost[name] / len(mine),
            "server_tokens_per_answer": tokens[name] / len(mine),
            "cost_ratio": _ratio(cost[name], cost[reference]),
            "cost_ratio_cheapest": _ratio(cost[name], cost[cheapest]),
            "token_ratio": _ratio(tokens[name], tokens[reference]),
            "client_tokens_per_answer": sum(a.client_tokens for a in mine) / len(mine),
            "p50_latency_s": statistics.median(a.latency_s for a in mine),
            "p50_ttft_s": statistics.median(ttfts) if ttfts else float("nan"),
            "escalation_rate": sum(escalations) / len(escalations) if escalations else None,
        })
    print(f"\nquestions with an error in some arm, left out of every arm: {len(failed)}")
    for a in [a for a in answers if a.error][:5]:
        print(f"  {a.arm} q{a.question}: {a.error}")
    return rows


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else float("nan")


def show(rows: list[dict]) -> None:
    reference = next(r["arm"] for r in rows if r["reference"])
    cheapest = next(r["arm"] for r in rows if r["cheapest"])
    print(f"\nreference server: {reference}; cheapest server alone: {cheapest}")
    print("\n| arm | answers | server $ / answer | cost / reference | cost / cheapest | server tokens / answer | "
          "token ratio | client tokens / answer | p50 latency s | p50 TTFT s | escalation |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        esc = f"{r['escalation_rate']:.0%}" if r["escalation_rate"] is not None else ""
        mark = " (reference)" if r["reference"] else " (cheapest)" if r["cheapest"] else ""
        print(f"| {r['arm']}{mark} | {r['answers']} | {r['cost_per_answer']:.5f} | **{r['cost_ratio']:.2f}** | "
              f"**{r['cost_ratio_cheapest']:.2f}** | {r['server_tokens_per_answer']:.0f} | {r['token_ratio']:.2f} | "
              f"{r['client_tokens_per_answer']:.0f} | {r['p50_latency_s']:.1f} | {r['p50_ttft_s']:.1f} | {esc} |")


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        ax.scatter(r["p50_latency_s"], r["cost_ratio"], s=60)
        ax.annotate(r["arm"], (r["p50_latency_s"], r["cost_ratio"]), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("p50 latency per answer (s)")
    ax.set_ylabel("server cost / server alone")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"\nwrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="sk-cost-benchmark")
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=384,
                        help="The client model's answer budget in colm arms (--realistic-lengths: 470, written in full).")
    parser.add_argument("--realistic-lengths", action="store_true")
    parser.add_argument("--deadline-s", type=float, default=1800.0,
                        help="Every answer's deadline (colm.deadline_s). This measures cost, not speed: on a small "
                             "host a realistic-length guide answer outlives the router's default 300 s.")
    parser.add_argument("--png", type=Path, default=Path("docs/cost.png"))
    parser.add_argument("--json", type=Path, help="Also write every answer's figures here.")
    args = parser.parse_args()
    started = time.perf_counter()
    answers, order, reference = asyncio.run(run(args))
    rows = table(answers, order, reference)
    show(rows)
    if args.json:
        args.json.write_text(json.dumps([a.__dict__ for a in answers], indent=1))
    mode = "realistic lengths" if args.realistic_lengths else "natural lengths"
    plot(rows, args.png, f"CoLM cost vs latency, {len(answers) // len(rows)} questions, {mode}")
    print(f"took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
