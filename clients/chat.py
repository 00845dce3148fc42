"""`colm-chat`: ask the router a question from the terminal, optionally showing the collaboration.

    colm-chat "How do I reverse a linked list?"          one question, streamed
    colm-chat --trace "..."                              plus who was consulted and what they said
    colm-chat                                            interactive, multi-turn (empty line or Ctrl-D quits)
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import openai
from rich.console import Console
from rich.panel import Panel
from rich.table import Table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="colm-chat", description="Chat with a CoLM router (OpenAI-compatible).")
    p.add_argument("question", nargs="?", help="Ask one question and exit; omit for interactive mode.")
    p.add_argument("--base-url", default=os.environ.get("COLM_BASE_URL", "http://127.0.0.1:8000/v1"))
    p.add_argument("--api-key", default=os.environ.get("COLM_API_KEY", "none"))
    p.add_argument("--model", default="colm", help="colm, colm-client or server/<specialist>")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--top-k", type=int)
    p.add_argument("--iterations", type=int)
    p.add_argument("--selector", help="llm, embedding or all")
    p.add_argument("--trace", action="store_true", help="Show the collaboration trace.")
    p.add_argument("--no-stream", action="store_true")
    return p.parse_args(argv)


def colm_options(args: argparse.Namespace) -> dict[str, Any]:
    opts = {"top_k": args.top_k, "iterations": args.iterations, "selector": args.selector}
    return {"trace": args.trace, **{k: v for k, v in opts.items() if v is not None}}


def ask(client: openai.OpenAI, args: argparse.Namespace, messages: list[dict], console: Console) -> str:
    """Send the conversation; print the answer as it arrives; return it."""
    kwargs = dict(model=args.model, messages=messages, max_tokens=args.max_tokens, extra_body={"colm": colm_options(args)})
    if args.no_stream:
        resp = client.chat.completions.create(**kwargs)
        answer, colm = resp.choices[0].message.content or "", (resp.model_extra or {}).get("colm")
        console.print(answer)
    else:
        parts, colm = [], None
        for chunk in client.chat.completions.create(stream=True, **kwargs):
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
                console.print(chunk.choices[0].delta.content, end="", soft_wrap=True, highlight=False)
            colm = (chunk.model_extra or {}).get("colm") or colm
            if (chunk.model_extra or {}).get("error"):
                raise RuntimeError(chunk.model_extra["error"]["message"])
        console.print()
        answer = "".join(parts)
    if args.trace and colm:
        render_trace(colm, console)
    return answer


def render_trace(colm: dict[str, Any], console: Console) -> None:
    usage = colm.get("usage", {})
    head = f"selector [bold]{colm.get('selector')}[/] picked [bold]{', '.join(colm.get('selected', []))}[/]"
    if colm.get("selection_fallback"):
        head += f"  (fallback: {colm['selection_fallback']})"
    if colm.get("degraded"):
        head += f"\n[red]degraded:[/] {'; '.join(colm['degraded'])}"
    console.print(Panel(head, title="CoLM trace"))
    for rnd in colm.get("rounds", []):
        for g in rnd.get("guidance", []):
            body = g.get("text") or f"[red]{g.get('error')}[/]"
            console.print(Panel(body, title=f"guidance: {g['specialist']} ({g['latency_s']:.1f}s)", border_style="cyan"))
        if rnd.get("summary"):
            console.print(Panel(rnd["summary"], title=f"round {rnd['index']}: summary", border_style="magenta"))
        change = "" if rnd.get("change") is None else f", change {rnd['change']:.2f}"
        console.print(f"[dim]round {rnd['index']}: {rnd.get('stop_reason') or 'continue'}{change}[/]")
    table = Table("server tokens", "client tokens", "cost (USD)", *[f"{k} (s)" for k in colm.get("latency_s", {})])
    table.add_row(str(usage.get("server_tokens")), str(usage.get("client_tokens")), f"{usage.get('cost_usd', 0):.6f}",
                  *[f"{v:.2f}" for v in colm.get("latency_s", {}).values()])
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, timeout=600)
    try:
        if args.question:
            ask(client, args, [{"role": "user", "content": args.question}], console)
            return 0
        messages: list[dict] = []
        while True:
            question = console.input("[bold green]you>[/] ").strip()
            if not question:
                return 0
            messages.append({"role": "user", "content": question})
            messages.append({"role": "assistant", "content": ask(client, args, messages, console)})
    except EOFError:
        return 0
    except openai.APIError as exc:
        console.print(f"[red]error:[/] {exc.message}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
