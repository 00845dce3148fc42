"""cascade (after AutoMix / FrugalGPT): the client model answers first, and only an answer it
is unsure of is escalated: to the servers' help with its draft's opening attached (shepherd, guide), or
to the selected specialist's server, which then writes the whole answer (server)."""

from __future__ import annotations

import time

from colm_serve import telemetry
from colm_serve.accounting.ledger import Estimate
from colm_serve.collab import confidence, prompts
from colm_serve.collab.checks import Check, Verdict, build_checks
from colm_serve.collab.passthrough import ANSWER_CAP
from colm_serve.collab.estimate import Bound, priciest
from colm_serve.collab.steps import Run, Steps, Written
from colm_serve.collab.strategies.base import Step, Strategy, refuse_structured_continuation
from colm_serve.protocol.openai import ChatCompletionRequest
from colm_serve.collab.strategies.guide import Guide, with_selection
from colm_serve.collab.strategies.shepherd import Shepherd
from colm_serve.outcome import Finished
from colm_serve.protocol.trace import RoundTrace


class Cascade(Strategy):
    name = "cascade"
    summary = ("The client model answers first; when its confidence score is below the threshold the request "
               "escalates to shepherd (default), guide, or the server alone. A confident answer costs no server tokens.")
    STEPS = (
        Step("draft", "client", "the answer, with token log-probabilities"),
        Step("check", "router", "only when configured (collaboration.cascade.check): the draft's code run against the "
                                "examples the question shows, in a sandbox; a failed check escalates"),
        Step("confidence", "router", "the draft's confidence score (collaboration.cascade.signal) against the threshold; "
                                     "every score is kept in the trace"),
        Step("escalation", "server", "only when unsure: shepherd's prefix, guide's notes and critique (both seeing the "
                                     "draft's opening, draft_tokens; 0: as the strategy alone), or the selected "
                                     "specialist's whole answer (server)"),
        Step("answer", "client", "only when unsure, for shepherd and guide: the continuation, or the revision "
                                 "(a fresh answer with draft_tokens 0)"),
    )
    OPTIONS = frozenset({"threshold", "escalate_to", "signal", "check", "draft_tokens"}) | Guide.OPTIONS | Shepherd.OPTIONS
    BOUND = ("0 when confident; when unsure, the escalation's bound with the longest draft attached "
             "(shepherd: one prefix call; guide: its notes and critiques; server: one whole answer)")

    def __init__(self, steps: Steps) -> None:
        super().__init__(steps)
        self.guide, self.shepherd = Guide(steps), Shepherd(steps)
        self.checks = build_checks(timeout_s=self.args.collaboration.cascade.check_timeout_s)

    def check_request(self, req: ChatCompletionRequest) -> None:
        super().check_request(req)
        if (req.options().escalate_to or self.args.collaboration.cascade.escalate_to) == "shepherd":
            refuse_structured_continuation(req, "strategy cascade escalating to shepherd")

    def plan_note(self, run: Run) -> str:
        threshold, escalate_to, signal = self.plan(run)
        return (f"Strategy cascade: the client model answers; below a {signal} confidence of {threshold} "
                f"it escalates to {escalate_to}.\n")

    def plan(self, run: Run) -> tuple[float, str, str]:
        opts, cfg = run.req.options(), self.args.collaboration.cascade
        threshold = cfg.threshold if opts.threshold is None else opts.threshold
        return threshold, opts.escalate_to or cfg.escalate_to, opts.signal or cfg.signal

    def draft_tokens(self, run: Run) -> int:
        tokens = run.req.options().draft_tokens
        return self.args.collaboration.cascade.draft_tokens if tokens is None else tokens

    def bound(self, run: Run) -> Estimate:
        _, escalate_to, _ = self.plan(run)
        draft_tokens = self.draft_tokens(run)
        if escalate_to == "server":
            messages = [m.model_dump(exclude_none=True) for m in run.req.messages]
            return with_selection(self, run, Bound().call(priciest(self.args), messages, run.req.output_limit() or ANSWER_CAP)).estimate()
        target = self.shepherd if escalate_to == "shepherd" else self.guide
        return target.bound(run, draft_tokens=draft_tokens)

    async def body(self, run: Run) -> None:
        threshold, escalate_to, signal = self.plan(run)
        with telemetry.span("colm.round", index=0, step="draft") as span:
            draft = await self.steps.write(run, prompts.client_messages(run.conv.text_history(), run.conv.question_text()),
                                           step="draft:1", logprobs=True)
            span.set(completion_tokens=draft.completion_tokens, mean_logprob=draft.mean_logprob)
        run.trace.rounds.append(RoundTrace(index=0, answer=draft.text))
        run.trace.confidence = confidence.scores(draft.token_logprobs)
        verdict = await self.check_draft(run, draft)
        score = run.trace.confidence.get(signal)
        unsure = score is None or score < threshold or verdict.outcome == "failed"
        why = ("the client model reported no log-probabilities" if score is None
               else f"{signal} confidence {score:.3f} {'<' if score < threshold else '>='} threshold {threshold}")
        if verdict.outcome != "none":
            why = f"{verdict.name} check {verdict.outcome} ({verdict.detail}); {why}"  # "(3 shown)" or what failed
        if unsure and run.ctx.max_specialists == 0:
            run.trace.degrade(f"client_only: {run.ctx.budget_note}")
            unsure, why = False, why + "; the budget pays for no escalation"
        run.trace.decide("escalate", escalate_to if unsure else "no", why)
        telemetry.current().set(escalated_to=escalate_to if unsure else None, confidence=score)
        run.note("escalation", f"{why}: {'escalating to ' + escalate_to if unsure else 'the draft stands'}.\n")
        if not unsure:
            run.trace.rounds[-1].stop_reason = "confident: no server consulted"
            run.emit(draft.text)
            run.emit(Finished(draft.finish_reason))
            return
        await self.escalate(run, escalate_to, draft)

    async def check_draft(self, run: Run, draft: Written) -> Verdict:
        check: Check = self.checks[run.req.options().check or self.args.collaboration.cascade.check]
        if check.name == "none":
            return await check.run("", "")
        started = time.perf_counter()
        with telemetry.span("colm.check", check=check.name) as span:
            verdict = await check.run(run.conv.question_text(), draft.text)
            span.set(outcome=verdict.outcome, examples=verdict.examples)
        run.trace.add_latency("check", time.perf_counter() - started)
        run.trace.check = verdict
        return verdict

    async def escalate(self, run: Run, escalate_to: str, draft: Written) -> None:
        # With no draft attached the escalation is the target strategy as it runs alone: neither the servers
        # nor the client model anchor on an answer that was judged unsure (docs/quality.md).
        attached = prompts.excerpt(draft.text, self.draft_tokens(run))
        if escalate_to in ("shepherd", "server"):
            spec = (await self.steps.select(run, selector=self.selector(run.req.options()), k=1))[0]
            if escalate_to == "server":
                await self.steps.hand_over(run, spec)
            else:
                await self.shepherd.lead(run, spec, draft=attached)
            return
        k, iterations, summary = self.guide.plan(run)
        notes, reviewer, guidance = await self.guide.consult(run, k=k, summary=summary, draft=attached)
        await self.guide.answer(run, notes=notes, reviewer=reviewer, iterations=iterations, guidance=guidance,
                                draft=draft.text if attached else None)
