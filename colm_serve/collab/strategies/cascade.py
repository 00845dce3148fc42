"""cascade (after AutoMix / FrugalGPT): the client model answers first, and only an answer it
is unsure of is escalated to the servers, with its draft attached."""

from __future__ import annotations

from colm_serve import telemetry
from colm_serve.accounting.ledger import Estimate
from colm_serve.collab import prompts
from colm_serve.collab.steps import Run, Steps
from colm_serve.collab.strategies.base import Step, Strategy
from colm_serve.collab.strategies.guide import Guide
from colm_serve.collab.strategies.shepherd import Shepherd
from colm_serve.outcome import Finished
from colm_serve.protocol import RoundTrace


class Cascade(Strategy):
    name = "cascade"
    summary = ("The client model answers first; when its mean token log-probability is below the threshold the "
               "request escalates to shepherd (default) or guide with the draft attached. A confident answer "
               "costs no server tokens.")
    STEPS = (
        Step("draft", "client", "the answer, with token log-probabilities"),
        Step("confidence", "router", "mean token log-probability of the draft against the threshold"),
        Step("escalation", "server", "only when unsure: shepherd's prefix or guide's notes and critique, seeing the draft"),
        Step("answer", "client", "only when unsure: the continuation (shepherd) or the revision (guide)"),
    )
    OPTIONS = frozenset({"threshold", "escalate_to"}) | Guide.OPTIONS | Shepherd.OPTIONS
    BOUND = ("0 when confident; when unsure, the escalation's bound with the longest draft attached "
             "(shepherd: one prefix call; guide: its notes and critiques)")

    def __init__(self, steps: Steps) -> None:
        super().__init__(steps)
        self.guide, self.shepherd = Guide(steps), Shepherd(steps)

    def plan_note(self, run: Run) -> str:
        threshold, escalate_to, _ = self.plan(run)
        return (f"Strategy cascade: the client model answers; below a mean token log-probability of {threshold} "
                f"it escalates to {escalate_to}.\n")

    def plan(self, run: Run) -> tuple[float, str, int]:
        opts, cfg = run.req.options(), self.args.collaboration.cascade
        threshold = cfg.threshold if opts.threshold is None else opts.threshold
        return threshold, opts.escalate_to or cfg.escalate_to, cfg.draft_tokens

    def bound(self, run: Run) -> Estimate:
        _, escalate_to, draft_tokens = self.plan(run)
        target = self.shepherd if escalate_to == "shepherd" else self.guide
        return target.bound(run, draft_tokens=draft_tokens)

    async def body(self, run: Run) -> None:
        threshold, escalate_to, draft_tokens = self.plan(run)
        conv = run.conv
        with telemetry.span("colm.round", index=0, step="draft") as span:
            draft = await self.steps.write(run, prompts.client_messages(conv.text_history(), conv.question_text()),
                                           step="draft:1", logprobs=True)
            span.set(completion_tokens=draft.completion_tokens, mean_logprob=draft.mean_logprob)
        run.trace.rounds.append(RoundTrace(index=0, answer=draft.text))
        score = draft.mean_logprob
        unsure = score is None or score < threshold
        why = ("the client model reported no log-probabilities" if score is None
               else f"mean token log-probability {score:.3f} {'<' if unsure else '>='} threshold {threshold}")
        if unsure and run.ctx.max_specialists == 0:
            run.trace.degrade(f"client_only: {run.ctx.budget_note}")
            unsure, why = False, why + "; the budget pays for no escalation"
        run.trace.decide("escalate", escalate_to if unsure else "no", why)
        telemetry.current().set(escalated_to=escalate_to if unsure else None, mean_logprob=score)
        run.note("escalation", f"{why}: {'escalating to ' + escalate_to if unsure else 'the draft stands'}.\n")
        if not unsure:
            run.trace.rounds[-1].stop_reason = "confident: no server consulted"
            run.emit(draft.text)
            run.emit(Finished(draft.finish_reason))
            return
        attached = prompts.excerpt(draft.text, draft_tokens)
        if escalate_to == "shepherd":
            spec = (await self.steps.select(run, selector=self.selector(run.req.options()), k=1))[0]
            await self.shepherd.lead(run, spec, draft=attached)
            return
        k, iterations, summary = self.guide.plan(run)
        notes, reviewer, guidance = await self.guide.consult(run, k=k, summary=summary, draft=attached)
        await self.guide.answer(run, notes=notes, reviewer=reviewer, iterations=iterations, guidance=guidance,
                                draft=draft.text)
