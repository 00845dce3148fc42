"""shepherd (after "LLM Shepherding"): the best specialist writes only the opening of the
answer; the client model continues it from that prefix, so the opening is never written twice."""

from __future__ import annotations

from colm_serve import telemetry
from colm_serve.accounting.ledger import Estimate
from colm_serve.collab import prompts
from colm_serve.collab.estimate import Bound, longest_text, priciest
from colm_serve.collab.steps import Run
from colm_serve.collab.strategies.base import Step, Strategy, refuse_structured_continuation
from colm_serve.protocol.openai import ChatCompletionRequest
from colm_serve.collab.strategies.guide import with_selection
from colm_serve.config import SpecialistConfig
from colm_serve.errors import as_colm_error
from colm_serve.outcome import Finished
from colm_serve.protocol.trace import RoundTrace


class Shepherd(Strategy):
    name = "shepherd"
    summary = ("The best specialist writes the first prefix_tokens of the answer; the client model continues "
               "the answer from that prefix.")
    STEPS = (
        Step("selection", "router", "the single most relevant specialist, by local embedding similarity"),
        Step("prefix", "server", "the first prefix_tokens tokens of the answer itself"),
        Step("continue", "client", "the rest of the answer, continuing the prefix (chat template continue-final-message)"),
    )
    OPTIONS = frozenset({"prefix_tokens"})

    def check_request(self, req: ChatCompletionRequest) -> None:
        super().check_request(req)
        refuse_structured_continuation(req, "strategy shepherd")
    BOUND = "one call: the question's prompt + prefix_tokens [+ the selection call with selector llm]"

    def prefix_tokens(self, run: Run) -> int:
        return run.req.options().prefix_tokens or self.args.collaboration.shepherd.prefix_tokens

    def bound(self, run: Run, *, draft_tokens: int = 0) -> Estimate:
        conv, spec = run.conv, priciest(self.args)
        attached = longest_text(draft_tokens) if draft_tokens else None
        messages = prompts.prefix_messages(conv.text_history(), conv.question_text(), draft=attached)
        bound = Bound().specialist_calls(spec, messages, self.prefix_tokens(run), k=1)
        return with_selection(self, run, bound).estimate()

    async def body(self, run: Run) -> None:
        if run.ctx.max_specialists == 0:
            run.trace.degrade(f"client_only: {run.ctx.budget_note}")
            await self.alone(run, "the budget pays for no specialist")
            return
        spec = (await self.steps.select(run, selector=self.selector(run.req.options()), k=1))[0]
        await self.lead(run, spec)

    def plan_note(self, run: Run) -> str:
        return (f"Strategy shepherd: the best specialist writes the first {self.prefix_tokens(run)} tokens of the answer, "
                f"the client model writes the rest.\n")

    async def lead(self, run: Run, spec: SpecialistConfig, *, draft: str | None = None) -> None:
        """`spec` writes the opening (seeing the client's draft, when given); the client continues."""
        with telemetry.span("colm.round", index=len(run.trace.rounds), step="prefix") as span:
            await self._lead(run, spec, draft=draft)
            last = run.trace.rounds[-1] if run.trace.rounds else None
            span.set(stop_reason=last.stop_reason if last else None, prefix_chars=len(last.prefix or "") if last else 0,
                     completion_tokens=run.trace.usage.client_completion_tokens)

    async def _lead(self, run: Run, spec: SpecialistConfig, *, draft: str | None) -> None:
        conv, cap = run.conv, self.prefix_tokens(run)
        messages = prompts.prefix_messages(conv.text_history(), conv.question_for(spec), draft=draft)
        try:
            reply = await self.steps.ask(run, spec, messages, step="prefix", max_tokens=cap)
        except Exception as exc:
            run.trace.degrade(f"client_only: {spec.name} wrote no prefix ({as_colm_error(exc).message})")
            await self.alone(run, "no prefix to continue")
            return
        prefix = reply.text
        run.trace.rounds.append(RoundTrace(index=0, prefix=prefix))
        if not prefix.strip():
            run.trace.degrade(f"client_only: {spec.name} wrote an empty prefix")
            await self.alone(run, "no prefix to continue")
            return
        run.emit(prefix)  # the answer's opening, final as written
        if reply.finish_reason == "stop":
            run.trace.decide("continue", "no", f"{spec.name} finished the answer within {reply.completion_tokens} tokens")
            run.trace.rounds[-1].answer, run.trace.rounds[-1].stop_reason = prefix, "the server's answer was complete"
            run.emit(Finished("stop"))
            return
        run.trace.decide("continue", "client", f"{spec.name} wrote {reply.completion_tokens} tokens; the client model continues")
        run.note("prefix", f"{spec.name} wrote the opening ({reply.completion_tokens} tokens); the client model continues.\n")
        rest = await self.steps.write(run, prompts.continuation_messages(conv.text_history(), conv.question_text(), prefix),
                                      step="continue", final=True, continue_final=True)
        run.trace.rounds[-1].answer, run.trace.rounds[-1].stop_reason = prefix + rest.text, "continued by the client model"
        run.emit(Finished(rest.finish_reason))

    async def alone(self, run: Run, why: str) -> None:
        run.trace.decide("answer", "client", why)
        conv = run.conv
        written = await self.steps.write(run, prompts.client_messages(conv.text_history(), conv.question_text()),
                                         step="answer", final=True)
        run.trace.rounds.append(RoundTrace(index=len(run.trace.rounds), answer=written.text, stop_reason=why))
        run.emit(Finished(written.finish_reason))
