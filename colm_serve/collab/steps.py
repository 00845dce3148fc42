"""The steps strategies are made of, each written once: where it runs, what it bills, what it
leaves in the trace and on the stream.

A `Run` is one request's collaboration in progress. Steps bill every server call through the
request context, add client tokens to the trace, and show their work as Progress when the
request streams with progress on. Only a step marked `final` writes the answer itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass

from colm_serve import telemetry
from colm_serve.client_model.chat import bill, generation
from colm_serve.client_model.completions import completion_events
from colm_serve.client_model.types import ClientLM, Generation, GenerationRequest, TokenLogprob
from colm_serve.collab import prompts
from colm_serve.collab.passthrough import server_answer
from colm_serve.collab.context import RequestContext
from colm_serve.collab.conversation import Conversation
from colm_serve.collab.guidance import GuidanceFanout, GuidanceResult
from colm_serve.collab.selection import Selector, select
from colm_serve.config import AppArgs, SpecialistConfig
from colm_serve.errors import as_colm_error
from colm_serve.outcome import Chunk, Completion, Finished, Progress
from colm_serve.protocol.openai import ChatCompletionRequest
from colm_serve.protocol.trace import GuidanceTrace, RoundTrace, Trace
from colm_serve.server_proxy.types import UpstreamReply

Emit = Callable[[str | Progress | Finished | Chunk | Completion], None]


@dataclass
class Run:
    """One request's collaboration in progress: the request, its context, where events go."""

    req: ChatCompletionRequest
    conv: Conversation
    ctx: RequestContext
    stream: bool
    emit: Emit = lambda event: None
    answer_logprobs: list[TokenLogprob] | None = None  # the client model's tokens of the answer (logprobs asked)

    @property
    def trace(self) -> Trace:
        return self.ctx.trace

    @property
    def progress(self) -> bool:
        return self.stream and self.req.options().progress

    def note(self, step: str, text: str) -> None:
        """Visible work: streamed as reasoning_content, dropped from a plain response."""
        if self.progress and text:
            self.emit(Progress(step, text))


@dataclass
class Written:
    """What the client model wrote in one step."""

    text: str
    finish_reason: str | None
    completion_tokens: int
    mean_logprob: float | None = None
    token_logprobs: list[float] | None = None


class Steps:
    def __init__(self, *, args: AppArgs, client: ClientLM, selectors: dict[str, Selector]) -> None:
        self.args, self.selectors, self._client = args, selectors, client
        self._fanout = GuidanceFanout(config=args.guidance)
        fallback = args.selection.fallback
        self.fallback = fallback + [s.name for s in args.specialists if s.name not in fallback]

    # -- selection (on the router, or one server call with the llm selector) ------------

    async def select(self, run: Run, *, selector: Selector, k: int) -> list[SpecialistConfig]:
        t0, conv = time.time(), run.conv
        run.ctx.check("selection")
        with telemetry.span("colm.selection", selector=selector.name, k=k) as span:
            sel = await select(selector, question=conv.question.text(), candidates=self.args.specialists, k=k,
                               fallback=self.fallback, ctx=run.ctx)
            span.set(selected=",".join(sel.names), fallback=sel.fallback or "")
        if conv.question.has_image():
            sel.names = self._with_vision(sel.names, k)
        run.trace.selector, run.trace.selected, run.trace.selection_fallback = sel.strategy, sel.names, sel.fallback
        why = ", ".join(f"{n} ({sel.scores[n]:.2f})" if n in sel.scores else n for n in sel.names)
        run.note("selection", f"Selected by {sel.strategy}: {why}" + (f" [{sel.fallback}]" if sel.fallback else "") + "\n")
        run.trace.add_latency("selection", time.time() - t0)
        return [self.args.specialist(n) for n in sel.names]

    def _with_vision(self, names: list[str], k: int) -> list[str]:
        """An image question needs at least one specialist that can see it, if any can."""
        if any(self.args.specialist(n).vision for n in names):
            return names
        seer = next((s.name for s in self.args.specialists if s.vision), None)
        return names if seer is None else (names[: max(0, k - 1)] + [seer])

    # -- server steps ---------------------------------------------------------------------

    async def guidance(self, run: Run, chosen: list[SpecialistConfig], *, draft: str | None = None) -> GuidanceResult:
        t0, conv, ctx = time.time(), run.conv, run.ctx
        ctx.check("guidance")
        reserves = [self.args.specialist(n) for n in self.fallback if n not in {c.name for c in chosen}]
        cap = self.args.guidance.max_tokens

        def messages_for(spec: SpecialistConfig) -> list[dict]:
            return prompts.guidance_messages(spec, conv.text_history(), conv.question_for(spec), max_tokens=cap, draft=draft)

        def on_note(note: GuidanceTrace) -> None:
            run.note(f"guidance:{note.specialist}", (note.text or f"(no guidance: {note.error})") + "\n")

        result = await self._fanout.gather(selected=chosen, reserves=reserves, messages_for=messages_for, ctx=ctx,
                                           on_note=on_note)
        run.trace.add_latency("guidance", time.time() - t0)
        if not result.answers() and result.refusals and len(result.refusals) == len(result.traces):
            # Every server refused admission: that is overload, for the caller to back off from,
            # not a failure to paper over with the client model alone.
            raise max(result.refusals, key=lambda e: int(e.headers.get("Retry-After", "1")))
        return result

    async def ask(self, run: Run, spec: SpecialistConfig, messages: list[dict], *, step: str, max_tokens: int,
                  temperature: float = 0.0) -> UpstreamReply:
        """One server call for `step`, billed to the request, with its span and latency."""
        t0 = time.time()
        run.ctx.check(step)
        with telemetry.span(f"colm.{step}", specialist=spec.name, server=spec.server) as span:
            reply = await run.ctx.chat(run.ctx.call(spec, messages=messages, max_tokens=max_tokens, temperature=temperature))
            span.set(prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                     cost_usd=reply.billed.cost_usd, cached=reply.cached, coalesced=reply.coalesced)
        run.trace.add_latency(step, time.time() - t0)
        return reply

    async def hand_over(self, run: Run, spec: SpecialistConfig, *, whole: bool = False) -> None:
        """`spec`'s server answers the request as sent, as `server/<name>` would: the answer is its
        own. `whole`: its body too (tool calls, logprobs, every parameter forwarded)."""
        t0 = time.time()
        run.ctx.check("answer")
        with telemetry.span("colm.answer", specialist=spec.name, server=spec.server):
            async for piece in server_answer(spec, run.req, run.ctx, stream=run.stream, whole=whole):
                run.emit(piece)
        run.trace.rounds.append(RoundTrace(index=len(run.trace.rounds), stop_reason=f"answered by {spec.name}'s server"))
        run.trace.add_latency("answer", time.time() - t0)

    async def client_turn(self, run: Run) -> None:
        """The client model writes the request's whole turn, as `colm-client` would (tool calls
        under structured outputs included)."""
        t0, ctx = time.time(), run.ctx
        run.ctx.check("answer")
        with telemetry.span("colm.answer", on="client"):
            async with aclosing(completion_events(self._client, run.req, model_name=self.args.client_model.name,
                                                  request_id=ctx.request_id, trace=run.trace, stream=run.stream,
                                                  label=ctx.client, weight=ctx.weight, deadline=ctx.deadline)) as events:
                async for event in events:
                    run.emit(event)
        run.trace.rounds.append(RoundTrace(index=len(run.trace.rounds), stop_reason="answered by the client model"))
        run.trace.add_latency("client", time.time() - t0)

    async def summarize(self, run: Run, guidance: GuidanceResult, *, how: str) -> str | None:
        """The notes the client reads: merged by the client model, by the reference server, or not at all."""
        notes = guidance.answers()
        if not notes:
            return None
        joined = "\n\n".join(f"{name}: {text}" for name, text in notes.items())
        if how == "none" or len(notes) == 1:
            run.trace.decide("summary", "none", "one note needs no merging" if len(notes) == 1 else "summary: none")
            return joined
        question, cap = run.conv.question.text(), self.args.refinement.summary_max_tokens
        try:
            if how == "server":
                reference = self.args.specialist(self.args.reference_server)
                reply = await self.ask(run, reference, prompts.summary_messages(question, notes), step="summary",
                                       max_tokens=cap)
                merged = reply.text.strip()
            else:
                with telemetry.span("colm.summary", on="client", notes=len(notes)) as span:
                    written = await self.write(run, prompts.client_summary_messages(question, notes), step="summary",
                                               max_tokens=cap, temperature=0.0, shown=False)
                    span.set(completion_tokens=written.completion_tokens)
                merged = prompts.without_delimiters(written.text).strip()
        except Exception as exc:  # the notes themselves are still worth passing on
            run.trace.degrade(f"summary failed ({as_colm_error(exc).message}); guidance passed on unsummarized")
            return joined
        run.trace.decide("summary", how, f"{len(notes)} notes merged on the {how}")
        run.note("summary", f"Notes: {merged}\n")
        return merged or joined

    # -- client steps -----------------------------------------------------------------------

    async def write(self, run: Run, messages: list[dict], *, step: str, final: bool = False, max_tokens: int | None = None,
                    temperature: float | None = None, logprobs: bool = False, continue_final: bool = False,
                    shown: bool = True) -> Written:
        """The client model writes. A `final` write is the answer: its text goes out as content
        (token by token when streaming); any other write is shown as progress under `step`
        (unless `shown` is off: a summary is shown once, merged)."""
        t0, req, cfg = time.time(), run.req, self.args.refinement
        gen = GenerationRequest(
            messages=messages,
            max_tokens=max_tokens or req.output_limit() or cfg.client_max_tokens,
            temperature=(cfg.client_temperature if req.temperature is None else req.temperature) if temperature is None else temperature,
            top_p=req.top_p or 1.0,
            stop=req.stop if step != "summary" else None,
            seed=req.seed,
            request_id=run.ctx.request_id,
            client=run.ctx.client,
            weight=run.ctx.weight,
            deadline=run.ctx.deadline,
            logprobs=logprobs,
            continue_final_message=continue_final,
            min_tokens=(req.min_tokens or 0) if final else 0,
            ignore_eos=bool(req.ignore_eos) if final else False,
            # The answer is written under the client app's response_format; drafts and notes stay free text.
            structured=req.response_format.structured() if final and req.response_format else None,
            top_logprobs=(req.top_logprobs or 0) if final and req.logprobs else None,
            presence_penalty=(req.presence_penalty or 0.0) if final else 0.0,
            frequency_penalty=(req.frequency_penalty or 0.0) if final else 0.0,
        )
        gen.trace_context = telemetry.inject() or None
        written = await self._generate(run, gen, step=step, final=final, shown=shown)
        run.trace.add_latency("client", time.time() - t0)
        return written

    async def _generate(self, run: Run, gen: GenerationRequest, *, step: str, final: bool, shown: bool) -> Written:
        """Streams from the engine only when someone watches: the answer, or progress shown. A
        cancelled request closes the generation, which stops the model at once."""
        live = run.stream and (final or (run.progress and shown))
        parts, out = [], None
        async with aclosing(generation(self._client, gen, stream=live)) as items:
            async for item in items:
                if isinstance(item, Generation):
                    out = item
                    continue
                parts.append(item)
                if final:
                    run.emit(item)
                elif live:
                    run.note(step, item)
        if out is None:
            return Written("".join(parts), None, 0)
        bill(run.trace, out)
        if final and (tokens := out.all_samples()[0].logprobs) is not None:
            run.answer_logprobs = tokens
        if live and not final:
            run.note(step, "\n")
        return Written(out.text, out.finish_reason, out.completion_tokens, out.mean_logprob, out.token_logprobs)

