"""`colm-chat`: ask the router a question from the terminal, and watch the collaboration work.

    colm-chat "How do I reverse a list in Python?"      one question: its steps live, then the answer
    colm-chat --trace "..."                             plus the trace: who was picked, rounds, latencies
    colm-chat                                           interactive, multi-turn (empty line or Ctrl-D quits)

A streamed `colm` answer shows each step as it happens (the router sends them as
`delta.reasoning_content`, naming the step in `colm.step`): a spinner on the step at work,
each finished step (a specialist's guidance, the summary, a draft) as a panel, then the
answer as it is written, and at the end what it cost against the server alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from typing import Any

import openai
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

STEP_STYLES = {"plan": "green", "selection": "green", "guidance": "cyan", "summary": "magenta", "review": "magenta",
               "draft": "blue", "escalation": "yellow"}
LIVE_LINES = 6  # how much of the step at work the live area shows


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
    p.add_argument("--trace", action="store_true", help="Show the collaboration trace at the end.")
    p.add_argument("--no-progress", action="store_true", help="Do not stream the collaboration's steps.")
    p.add_argument("--no-stream", action="store_true")
    return p.parse_args(argv)


def colm_options(args: argparse.Namespace) -> dict[str, Any]:
    opts = {"top_k": args.top_k, "iterations": args.iterations, "selector": args.selector}
    return {"trace": args.trace, "progress": not args.no_progress, **{k: v for k, v in opts.items() if v is not None}}


class LiveView:
    """The terminal while an answer streams: a spinner on the step at work with its latest
    text, each finished step printed above it as a panel, then the answer as it arrives."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.step, self.text, self.steps_shown = "waiting for the router", [], 0
        self.answering = False
        self._live = Live(self._view(), console=console, refresh_per_second=10, transient=True)

    def __enter__(self) -> "LiveView":
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish_step()
        self._live.stop()

    def progress(self, step: str, text: str) -> None:
        if self.answering:  # a step after the answer began: a note under it
            self.console.print(Text(f"\n[{step}] {text}", style="dim"))
            return
        if step != self.step:
            self._finish_step()
            self.step = step
        self.text.append(text)
        self._live.update(self._view(), refresh=True)

    def answer(self, piece: str) -> None:
        if not self.answering:
            self._finish_step()
            self._live.stop()
            self.answering = True
        self.console.print(piece, end="", soft_wrap=True, highlight=False, markup=False)

    def _finish_step(self) -> None:
        if self.text:
            self.console.print(step_panel(self.step, "".join(self.text)))
            self.steps_shown += 1
        self.text = []

    def _view(self) -> RenderableType:
        tail = "\n".join("".join(self.text).strip().splitlines()[-LIVE_LINES:])
        return Group(Spinner("dots", Text(f" {self.step} ...", style="bold")), Text(tail, style="dim"))


def step_panel(step: str, text: str) -> Panel:
    kind, _, detail = step.partition(":")
    title = f"{kind}: {detail}" if detail else kind
    return Panel(Text(text.strip()), title=title, title_align="left", border_style=STEP_STYLES.get(kind, "white"))


def stream_answer(chunks: Iterable[Any], console: Console) -> tuple[str, dict[str, Any] | None, int]:
    """Shows a stream as it arrives; returns the answer, the last `colm` field, the steps shown."""
    parts: list[str] = []
    colm = None
    with LiveView(console) as view:
        for chunk in chunks:
            extra = chunk.model_extra or {}
            delta = chunk.choices[0].delta if chunk.choices else None
            if delta is not None and getattr(delta, "reasoning_content", None):
                view.progress((extra.get("colm") or {}).get("step") or "thinking", delta.reasoning_content)
            if delta is not None and delta.content:
                parts.append(delta.content)
                view.answer(delta.content)
            if "usage" in (extra.get("colm") or {}):
                colm = extra["colm"]
    console.print()
    return "".join(parts), colm, view.steps_shown


def ask(client: openai.OpenAI, args: argparse.Namespace, messages: list[dict], console: Console) -> str:
    """Send the conversation; show the work and the answer as they arrive; return the answer."""
    kwargs = dict(model=args.model, messages=messages, max_tokens=args.max_tokens, extra_body={"colm": colm_options(args)})
    if args.no_stream:
        with console.status("waiting for the router ..."):
            resp = client.chat.completions.create(**kwargs)
        answer, colm, shown = resp.choices[0].message.content or "", (resp.model_extra or {}).get("colm"), 0
        console.print(answer, highlight=False, markup=False)
    else:
        answer, colm, shown = stream_answer(client.chat.completions.create(stream=True, **kwargs), console)
    if args.trace and colm:
        render_trace(colm, console, guidance=not shown)
    if colm:
        render_usage(colm, console)
    return answer


def render_trace(colm: dict[str, Any], console: Console, *, guidance: bool = True) -> None:
    """The trace; `guidance=False` when the guidance was already shown live."""
    lines = [f"strategy [bold]{colm['strategy']}[/]"] if colm.get("strategy") else []
    if colm.get("selected"):
        lines.append(f"selector [bold]{colm.get('selector')}[/] picked [bold]{', '.join(colm['selected'])}[/]")
    if colm.get("selection_fallback"):
        lines.append(f"selection fallback: {colm['selection_fallback']}")
    lines += [f"{d['step']}: [bold]{d['choice']}[/] {d.get('why') or ''}" for d in colm.get("decisions", [])]
    console.print(Panel("\n".join(lines) or "[dim]the response carries no trace[/]", title="CoLM trace"))
    for rnd in colm.get("rounds", []):
        for g in rnd.get("guidance", []) if guidance else []:
            body = Text(g.get("text") or "") if g.get("text") else Text(str(g.get("error")), style="red")
            console.print(Panel(body, title=f"guidance: {g['specialist']} ({g['latency_s']:.1f}s)", border_style="cyan"))
        if guidance and rnd.get("summary"):
            console.print(Panel(Text(rnd["summary"]), title=f"round {rnd['index']}: summary", border_style="magenta"))
        change = "" if rnd.get("change") is None else f", change {rnd['change']:.2f}"
        console.print(f"[dim]round {rnd['index']}: {rnd.get('stop_reason') or 'continue'}{change}[/]")
    if colm.get("latency_s"):
        console.print("[dim]latency: " + ", ".join(f"{k} {v:.2f}s" for k, v in colm["latency_s"].items()) + "[/]")


def render_usage(colm: dict[str, Any], console: Console) -> None:
    """Tokens and cost, and with a baseline the saving against the server alone."""
    usage = colm.get("usage") or {}
    if colm.get("degraded"):
        console.print(f"[red]degraded:[/] {'; '.join(colm['degraded'])}")
    table = Table(title="usage", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("server tokens", str(usage.get("server_tokens", 0)))
    table.add_row("client tokens", str(usage.get("client_tokens", 0)))
    table.add_row("cost (USD)", f"{usage.get('cost_usd', 0):.6f}")
    baseline, saving = usage.get("baseline_cost_usd"), usage.get("saving_usd")
    if baseline is not None:
        share = f" ({saving / baseline:.0%})" if saving is not None and baseline else ""
        mark = ", estimated" if usage.get("baseline_estimated") else ""
        table.add_row(f"server alone{mark} (USD)", f"{baseline:.6f}")
        table.add_row(f"saving{mark} (USD)", f"{saving or 0:.6f}{share}")
    console.print(table)
    if baseline is not None and usage.get("baseline_estimated"):
        console.print("[dim]estimated: the server alone was not asked; its cost is the question's tokens at the "
                      "reference server's prices plus a typical answer length.[/]")


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
        console.print(f"[red]error:[/] {exc.message}", highlight=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
