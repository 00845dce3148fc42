"""guide: the CoLM flow, made frugal. Servers write short notes and short critiques; the
client model merges the notes, writes the answer and revises it."""

from __future__ import annotations

from dataclasses import dataclass

from colm_serve import telemetry
from colm_serve.accounting.ledger import Estimate
from colm_serve.collab import prompts, refinement
from colm_serve.collab.estimate import Bound, longest_text, priciest
from colm_serve.collab.steps import Run, Written
from colm_serve.collab.strategies.base import Step, Strategy
from colm_serve.config import SpecialistConfig
from colm_serve.errors import InvalidRequest
from colm_serve.outcome import Finished
from colm_serve.protocol.trace import GuidanceTrace, RoundTrace


class Guide(Strategy):
    name = "guide"
    summary = ("The top-K specialists write terse notes in parallel; the client model merges them and writes the "
               "answer; one server critiques the draft and the client revises it.")
    STEPS = (
        Step("selection", "router", "rank the specialists by local embedding similarity (selector `llm` asks a server)"),
        Step("guidance", "server", "top_k specialists in parallel, each at most guidance.max_tokens of KEY FACTS / STEPS / PITFALLS"),
        Step("summary", "client", "merge the notes (summary: client; `server` asks the reference server; `none` passes them on)"),
        Step("draft", "client", "the answer, written with the notes"),
        Step("critique", "server", "each iteration, the best specialist lists fixes in at most refinement.critique_max_tokens, "
                                   "or NO CHANGES, which ends the loop"),
        Step("revise", "client", "the answer again, with the fixes; a revision that changes little ends the loop "
                                 "before the next critique is bought"),
    )
    OPTIONS = frozenset({"top_k", "iterations", "summary"})
    BOUND = ("top_k x (guidance prompt + guidance.max_tokens) + iterations x (critique prompt with the longest draft + "
             "refinement.critique_max_tokens) [+ summary prompt + summary_max_tokens with summary: server] "
             "[+ the selection call with selector llm]")

    def plan(self, run: Run) -> tuple[int, int, str]:
        opts, cfg = run.req.options(), self.args
        k = opts.top_k or cfg.selection.top_k
        if k > len(cfg.specialists):
            raise InvalidRequest(f"top_k={k} is more than the {len(cfg.specialists)} specialists", param="colm.top_k")
        iterations = cfg.refinement.iterations if opts.iterations is None else opts.iterations
        if iterations > cfg.refinement.max_iterations:
            raise InvalidRequest(f"iterations={iterations} is above the limit of {cfg.refinement.max_iterations}",
                                 param="colm.iterations")
        return k, iterations, opts.summary or cfg.collaboration.summary

    def bound(self, run: Run, *, draft_tokens: int = 0) -> Estimate:
        k, iterations, summary = self.plan(run)
        cfg, conv, spec = self.args, run.conv, priciest(self.args)
        longest = longest_text(run.req.output_limit() or cfg.refinement.client_max_tokens)
        bound = Bound().specialist_calls(
            spec, prompts.guidance_messages(spec, conv.text_history(), conv.question_text(),
                                            max_tokens=cfg.guidance.max_tokens,
                                            draft=longest_text(draft_tokens) if draft_tokens else None),
            cfg.guidance.max_tokens, k=k)
        critique = prompts.critique_messages(spec, conv.text_history(), conv.question_text(), longest,
                                             max_tokens=cfg.refinement.critique_max_tokens)
        bound.call(spec, critique, cfg.refinement.critique_max_tokens, times=iterations)
        if summary == "server":
            notes = {f"n{i}": longest_text(cfg.guidance.max_tokens) for i in range(k)}
            bound.call(cfg.specialist(cfg.reference_server), prompts.summary_messages(conv.question_text(), notes),
                       cfg.refinement.summary_max_tokens)
        return with_selection(self, run, bound).estimate()

    def plan_note(self, run: Run) -> str:
        k, iterations, summary = self.plan(run)
        return (f"Strategy guide: {k} specialist(s) write notes, the {summary if summary != 'none' else 'nobody'} "
                f"merges them, the client model writes the answer; up to {iterations} critique round(s).\n")

    async def body(self, run: Run) -> None:
        k, iterations, summary = self.plan(run)
        notes, reviewer, guidance = await self.consult(run, k=k, summary=summary)
        await self.answer(run, notes=notes, reviewer=reviewer, iterations=iterations, guidance=guidance)

    async def consult(self, run: Run, *, k: int, summary: str, draft: str | None = None
                      ) -> tuple[str | None, SpecialistConfig | None, list[GuidanceTrace]]:
        """Selection, guidance and summary: the notes, the best specialist that answered, the traces."""
        affordable = k if run.ctx.max_specialists is None else min(k, run.ctx.max_specialists)
        if run.ctx.budget_note:
            run.trace.degrade(f"client_only: {run.ctx.budget_note}" if not affordable
                              else f"budget: {run.ctx.budget_note}; consulted {affordable} of {k} specialists")
        if not affordable:
            run.trace.decide("guidance", "skip", "the budget pays for no specialist")
            return None, None, []
        chosen = await self.steps.select(run, selector=self.selector(run.req.options()), k=affordable)
        result = await self.steps.guidance(run, chosen, draft=draft)
        answered = [self.args.specialist(name) for name in result.answers()]
        if not answered:
            run.trace.degrade("client_only: no specialist answered; the client model answered alone")
            return None, None, result.traces
        notes = await self.steps.summarize(run, result, how=summary)
        return notes, answered[0], result.traces

    async def answer(self, run: Run, *, notes: str | None, reviewer: SpecialistConfig | None, iterations: int,
                     guidance: list[GuidanceTrace], draft: str | None = None) -> None:
        """Draft (or revise a given draft) with the notes, then critique and revise until a stop."""
        conv = run.conv
        rounds = iterations if reviewer is not None else 0
        messages = prompts.client_messages(conv.text_history(), conv.question_text(), notes=notes, draft=draft)
        base = len(run.trace.rounds)
        with telemetry.span("colm.round", index=base, step="revise" if draft else "draft") as span:
            current = await self.steps.write(run, messages, step=f"draft:{base + 1}", final=rounds == 0)
            round_ = RoundTrace(index=base, guidance=guidance, summary=notes, answer=current.text)
            if rounds == 0:
                round_.stop_reason = "iterations done (0)" if reviewer or not iterations else "no server to critique the draft"
            span.set(completion_tokens=current.completion_tokens, stop_reason=round_.stop_reason or "continue")
        run.trace.rounds.append(round_)
        if rounds == 0:
            run.emit(Finished(current.finish_reason))
            return
        for index in range(1, rounds + 1):
            with telemetry.span("colm.round", index=base + index, step="critique") as span:
                stop = await self._round(run, index=index, last=index == rounds, notes=notes, reviewer=reviewer, current=current)
                span.set(completion_tokens=stop.written.completion_tokens, change=run.trace.rounds[-1].change,
                         stop_reason=stop.reason or "continue")
            current = stop.written
            if stop.reason:
                run.trace.rounds[-1].stop_reason = stop.reason
                if not stop.streamed:
                    run.emit(current.text)  # decided after it was written: sent as a whole
                run.emit(Finished(current.finish_reason))
                return

    async def _round(self, run: Run, *, index: int, last: bool, notes: str | None, reviewer: SpecialistConfig,
                     current: Written) -> "_Stop":
        conv, cfg = run.conv, self.args.refinement
        critique = await self.steps.ask(
            run, reviewer, prompts.critique_messages(reviewer, conv.text_history(), conv.question_text(), current.text,
                                                     max_tokens=cfg.critique_max_tokens),
            step="critique", max_tokens=cfg.critique_max_tokens)
        fixes = critique.text.strip()
        run.note(f"review:{index}", f"{reviewer.name}: {fixes}\n")
        if prompts.says_no_changes(fixes) or not fixes:
            run.trace.decide("refine", "stop", f"{reviewer.name}: no changes needed")
            run.trace.rounds[-1].critique = fixes
            return _Stop(current, "critique: no changes needed", False)
        messages = prompts.client_messages(conv.text_history(), conv.question_text(), notes=notes, draft=current.text, fixes=fixes)
        revised = await self.steps.write(run, messages, step=f"draft:{len(run.trace.rounds) + 1}", final=last)
        change = refinement.change(current.text, revised.text)
        run.trace.rounds.append(RoundTrace(index=index, critique=fixes, answer=revised.text, change=change))
        if last:
            return _Stop(revised, f"iterations done ({index})", True)
        if change < cfg.stop_change:
            run.trace.decide("refine", "stop", f"change {change:.3f} < {cfg.stop_change}: no further critique bought")
            return _Stop(revised, f"converged: change {change:.3f} < {cfg.stop_change}", False)
        run.trace.decide("refine", "continue", f"change {change:.3f} >= {cfg.stop_change}")
        return _Stop(revised, None, False)


@dataclass
class _Stop:
    """After a round: the current answer, why the loop stops (None: it goes on), and whether
    the answer already went out as content while it was written."""

    written: Written
    reason: str | None
    streamed: bool


def with_selection(strategy: Strategy, run: Run, bound: Bound) -> Bound:
    """The llm selector is one more server call; the embedding selector runs on the router."""
    if strategy.selector(run.req.options()).name == "llm":
        cfg = strategy.args
        picker = cfg.specialist(cfg.selection.selector_specialist or cfg.reference_server)
        bound.call(picker, prompts.selection_messages(run.conv.question_text(), cfg.specialists, 1), cfg.selection.max_tokens)
    return bound
