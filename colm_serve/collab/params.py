"""What each model id does with each Chat Completions parameter of the openai SDK.

`server/<name>` forwards every parameter as sent (the upstream decides). `colm-client` (the
client model alone) and `colm` honour a parameter, or refuse it with a 400 that names it and
says why: nothing is silently dropped. `PARAMS` is the one table; README's table is written
from it (`python -m colm_serve.collab.params`), and a test walks the SDK's list against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from colm_serve.errors import InvalidRequest
from colm_serve.protocol.openai import SDK_PARAMS, VLLM_PARAMS, ChatCompletionRequest

LOCAL_KINDS = ("client", "colm")


@dataclass(frozen=True)
class Rule:
    """How one model kind treats a parameter: `note` says what it does; `refuse(value)` returns
    why a value cannot be honoured, or None. A rule with no `refuse` honours every value."""

    note: str
    refuse: Callable[[Any], str | None] | None = None

    @property
    def honoured(self) -> bool:
        return self.refuse is None


def always(reason: str) -> Callable[[Any], str]:
    return lambda _value: reason


def refused(reason: str) -> Rule:
    return Rule(f"400: {reason}", always(reason))


def honoured(note: str) -> Rule:
    return Rule(note)


def _only(allowed: tuple[Any, ...], reason: str) -> Callable[[Any], str | None]:
    """Any JSON value may arrive (lists included), so the test is by equality, not by hash."""
    return lambda value: None if any(value == a and type(value) is type(a) for a in allowed) else reason


def _text_modalities(value: Any) -> str | None:
    return None if value in (["text"], None) else "the client model writes text only"


NO_REASONING = "the client model has no reasoning mode"
SAME = "as OpenAI"
BOTH = "both"

# param -> {kind: Rule}; "both" holds for colm-client and colm alike.
PARAMS: dict[str, dict[str, Rule]] = {
    "messages": {BOTH: honoured("the conversation; `tool` messages are read as tool results")},
    "model": {BOTH: honoured(SAME)},
    "stream": {"client": honoured("SSE chunks"),
               "colm": honoured("SSE chunks; the steps as `reasoning_content`")},
    "stream_options": {BOTH: honoured("`include_usage`")},
    "max_tokens": {BOTH: honoured("the answer's cap")},
    "max_completion_tokens": {BOTH: honoured("the answer's cap")},
    "temperature": {BOTH: honoured("the client model's sampling")},
    "top_p": {BOTH: honoured("the client model's sampling")},
    "stop": {BOTH: honoured("the answer's stop sequences")},
    "seed": {BOTH: honoured("the client model's sampling")},
    "presence_penalty": {"client": honoured("the client model's sampling (vLLM)"),
                         "colm": honoured("the client model's sampling of the answer")},
    "frequency_penalty": {"client": honoured("the client model's sampling (vLLM)"),
                          "colm": honoured("the client model's sampling of the answer")},
    "user": {BOTH: honoured("recorded on the request's trace span")},
    "safety_identifier": {BOTH: honoured("recorded on the request's trace span")},
    "metadata": {BOTH: honoured("recorded on the request's trace span")},
    "n": {"client": honoured("n answers from one engine request (vLLM's `n`)"),
          "colm": Rule("1 only: one collaboration per request; send n requests",
                       _only((1,), "colm writes one answer per request; send n requests or use colm-client"))},
    "logprobs": {"client": honoured("each token's log-probability"),
                 "colm": honoured("the tokens of the answer that the client model wrote (streamed on the "
                                  "finish chunk)")},
    "top_logprobs": {"client": honoured("the most likely alternatives per token"),
                     "colm": honoured("the same, for the client model's tokens of the answer")},
    "logit_bias": {"client": honoured("biases the client model's token ids (vLLM)"),
                   "colm": refused("token ids differ between the client model and the servers; use colm-client")},
    "response_format": {"client": honoured("text, json_object or json_schema, valid by construction (vLLM "
                                           "structured outputs)"),
                        "colm": honoured("the client model writes the final answer under structured outputs; "
                                         "the servers' notes stay free text")},
    "tools": {"client": honoured("the client model writes tool calls whose arguments fit the schema "
                                 "(structured outputs)"),
              "colm": honoured("a turn that may call a tool goes to the best specialist's server "
                               "(see `tool_calls` in GET /v1/colm/strategies)")},
    "tool_choice": {BOTH: honoured("none, auto, required or a named function")},
    "parallel_tool_calls": {BOTH: honoured("false: at most one tool call per turn")},
    "store": {BOTH: Rule("false only: chat completions are not stored; use /v1/responses with `store`",
                         _only((False, None), "chat completions are not stored here; use /v1/responses "
                                              "with store and previous_response_id"))},
    "modalities": {BOTH: Rule("[\"text\"] only", _text_modalities)},
    "service_tier": {BOTH: Rule("auto or default only: one tier",
                                _only(("auto", "default", None), "there is one service tier"))},
    "prompt_cache_key": {"client": honoured("accepted: the client model's prefix cache needs no key"),
                         "colm": honoured("accepted: the servers get each specialist's own key (`colm-<name>`)")},
    "prompt_cache_retention": {BOTH: refused("the client model's prefix cache lives as long as the engine")},
    "prompt_cache_options": {BOTH: refused("the client model's prefix cache takes no options")},
    "reasoning_effort": {BOTH: refused(NO_REASONING)},
    "verbosity": {BOTH: refused(NO_REASONING)},
    "audio": {BOTH: refused("the client model writes text only")},
    "prediction": {BOTH: refused("predicted outputs are not supported by the client model's engine")},
    "web_search_options": {BOTH: refused("no web search here; give the client app a search tool")},
    "functions": {BOTH: refused("deprecated by OpenAI; send `tools`")},
    "function_call": {BOTH: refused("deprecated by OpenAI; send `tool_choice`")},
    "moderation": {BOTH: refused("no moderation here")},
    "min_tokens": {BOTH: honoured("vLLM: the client model writes at least this many tokens")},
    "ignore_eos": {BOTH: honoured("vLLM: the client model writes until the cap")},
}


def rule(param: str, kind: str) -> Rule:
    rules = PARAMS[param]
    return rules.get(kind) or rules[BOTH]


def check(req: ChatCompletionRequest, kind: str) -> None:
    """A 400 naming the first parameter that `kind` ("client" or "colm") cannot honour."""
    if kind not in LOCAL_KINDS:
        return
    for param in sorted(req.sent_params() - {"colm"}):
        reason = _refusal(param, kind, getattr(req, param))
        if reason:
            model = "colm" if kind == "colm" else "the client model"
            raise InvalidRequest(f"{param} is not supported by {model}: {reason}", param=param,
                                 code="unsupported_parameter")


def _refusal(param: str, kind: str, value: Any) -> str | None:
    if param not in PARAMS:  # a new SDK parameter this table has not met yet: refused, by name
        return "this parameter is not supported yet"
    refuse = rule(param, kind).refuse
    return refuse(value) if refuse else None


def table() -> str:
    """README's table: every parameter and what each model id does with it."""
    rows = ["| parameter | `server/<name>` | `colm-client` | `colm` |", "| --- | --- | --- | --- |"]
    for param in sorted(SDK_PARAMS | VLLM_PARAMS):
        cells = [rule(param, kind).note if param in PARAMS else "400" for kind in LOCAL_KINDS]
        rows.append(f"| `{param}` | forwarded | {' | '.join(cells)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
