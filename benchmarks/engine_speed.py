"""How fast a model writes, through any OpenAI-compatible endpoint: tokens a second for one
request and for N at once, on distinct GSM8K questions (greedy, no shared prompt but the chat
template's), optionally with another model kept busy beside it, as in the quality benchmark.

    make serve-quality   # in one shell
    python -m benchmarks.engine_speed --model server/qwen-math --levels 1 8
    python -m benchmarks.engine_speed --base-url http://127.0.0.1:8000/upstream/v1 --model qwen2.5-coder-1.5b --plain
    python -m benchmarks.engine_speed --model server/qwen-math --levels 8 --beside colm-client:8

Completion tok/s counts the answers' tokens over the wall time, prompts included in that time;
prompt tokens are printed beside them, since on a CPU a prompt token costs about as much compute
as a written one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import openai

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clients.eval.checkable import tasks


async def level(client: openai.AsyncOpenAI, model: str, n: int, *, max_tokens: int, offset: int, extra: dict | None) -> dict:
    problems = tasks.load("gsm8k")[offset:offset + n]
    started = time.perf_counter()
    replies = await asyncio.gather(*(client.chat.completions.create(
        model=model, messages=p.messages, max_tokens=max_tokens, temperature=0, extra_body=extra) for p in problems))
    wall = time.perf_counter() - started
    written = sum(r.usage.completion_tokens for r in replies)
    return {"model": model, "n": n, "prompt_tokens": sum(r.usage.prompt_tokens for r in replies),
            "completion_tokens": written, "wall_s": round(wall, 1), "tok_s": round(written / wall, 1)}


async def main_async(args: argparse.Namespace) -> list[dict]:
    client = openai.AsyncOpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=3600)
    rows, extra = [], None if args.plain else {"colm": {"cache": False}}  # the router's cache would answer repeats
    for n in args.levels:
        runs = [level(client, args.model, n, max_tokens=args.max_tokens, offset=0, extra=extra)]
        if args.beside:
            other, count = args.beside.rsplit(":", 1)
            runs.append(level(client, other, int(count), max_tokens=args.max_tokens, offset=100, extra=extra))
        rows += await asyncio.gather(*runs)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="sk-quality")
    parser.add_argument("--model", required=True)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8], help="Requests at once, one run each.")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--beside", help="MODEL:N, kept busy with N requests during each level.")
    parser.add_argument("--plain", action="store_true", help="An endpoint that is not the router: send no `colm` field.")
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {args.base_url}, greedy, max_tokens {args.max_tokens}")
    print("| model | at once | prompt tokens | completion tokens | wall s | completion tok/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in asyncio.run(main_async(args)):
        print(f"| {row['model']} | {row['n']} | {row['prompt_tokens']} | {row['completion_tokens']} | "
              f"{row['wall_s']} | {row['tok_s']} |")


if __name__ == "__main__":
    main()
