"""Tool calling for a small local model, valid by construction.

The conversation is rendered as plain text turns any chat template accepts (tool results and
earlier tool calls included). On a turn that may call a tool, the tools are listed in the system
prompt and the model writes one JSON object under vLLM structured outputs: `{"tool_calls": [...]}`
whose items fit the tools' schemas, or (tool_choice "auto") `{"content": ...}`. `read` turns that
object into OpenAI's message: tool calls with ids and JSON-string arguments, or content.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from colm_serve.errors import InvalidRequest
from colm_serve.protocol.openai import ChatCompletionRequest, ChatMessage, Tool

TOOLS_PROMPT = (
    "You can call these tools. Each is listed with what it does and the JSON schema of its arguments:\n"
    "{tools}\n\n{how}"
)
HOW_AUTO = (
    'Reply with one JSON object. To call tools: {"tool_calls": [{"name": <tool name>, "arguments": '
    '{...}}]}. To answer the user yourself: {"content": <your answer>}. Call a tool only when it helps.'
)
HOW_CALL = 'Reply with one JSON object that calls tools: {"tool_calls": [{"name": <tool name>, "arguments": {...}}]}.'
HOW_NAMED = 'Reply with one JSON object that calls the tool {name}: {{"tool_calls": [{{"name": "{name}", "arguments": {{...}}}}]}}.'
CALLED = "Called tool {name} with {arguments}"
RESULT = "Tool result ({name}): {content}"
NO_ARGUMENTS = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class ToolTurn:
    """A turn that may call a tool: the prompt section that lists the tools, and the JSON schema
    the answer is written under."""

    prompt: str
    schema: dict[str, Any]

    def structured(self) -> dict[str, Any]:
        # Compact JSON: a small model under a grammar that allows any whitespace can loop on it.
        return {"json": self.schema, "disable_any_whitespace": True}


def render(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """The conversation as text turns: developer as system, an assistant's tool calls as a line
    per call, and tool results as user turns (consecutive results in one), because the chat
    templates of small models may not render tool roles."""
    names = {call.id: call.function.name for m in messages for call in m.tool_calls or ()}
    turns: list[dict[str, str]] = []
    for m in messages:
        if m.role in ("tool", "function"):
            name = m.name or names.get(m.tool_call_id or "", "tool")
            text = RESULT.format(name=name, content=m.text())
            if turns and turns[-1].get("tool_results"):
                turns[-1]["content"] += "\n" + text
                continue
            turns.append({"role": "user", "content": text, "tool_results": "1"})
            continue
        text = m.text()
        if m.role == "assistant" and m.tool_calls:
            calls = [CALLED.format(name=c.function.name, arguments=c.function.arguments) for c in m.tool_calls]
            text = "\n".join(([text] if text else []) + calls)
        turns.append({"role": "system" if m.role == "developer" else m.role, "content": text})
    return [{"role": t["role"], "content": t["content"]} for t in turns]


def with_prompt(turns: list[dict[str, str]], section: str) -> list[dict[str, str]]:
    """`section` added to the system prompt (one is put first if there is none)."""
    if turns and turns[0]["role"] == "system":
        return [{"role": "system", "content": f"{turns[0]['content']}\n\n{section}".strip()}, *turns[1:]]
    return [{"role": "system", "content": section}, *turns]


def tool_turn(req: ChatCompletionRequest, *, content_schema: dict[str, Any] | None) -> ToolTurn | None:
    """The turn's tool plan, or None when the model answers freely (no tools, tool_choice none).
    `content_schema` constrains a direct answer under tool_choice auto (response_format)."""
    choice = req.tool_choice
    if not req.tools:
        if choice not in (None, "none", "auto"):
            raise InvalidRequest("tool_choice needs tools", param="tool_choice")
        return None
    if choice == "none":
        return None
    tools, mode = _chosen(req.tools, "auto" if choice is None else choice)
    single = req.parallel_tool_calls is False or mode == "named"
    calls = {"type": "array", "minItems": 1, "items": _any([_call_schema(t) for t in tools])}
    if single:
        calls["maxItems"] = 1
    wrapped = _object("tool_calls", calls)
    if mode == "auto":
        content = _object("content", content_schema or {"type": "string"})
        how, schema = HOW_AUTO, {"anyOf": [wrapped, content]}
    else:
        how = HOW_NAMED.format(name=tools[0].function.name) if mode == "named" else HOW_CALL
        schema = wrapped
    listing = "\n".join(_listing(t) for t in tools)
    return ToolTurn(prompt=TOOLS_PROMPT.format(tools=listing, how=how), schema=schema)


def read(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """The model's JSON as OpenAI's (content, tool_calls). A direct answer under a JSON schema
    comes back as JSON text. Raises ValueError when the text is not the whole object (cut short)."""
    value = json.loads(text)
    if "tool_calls" in value:
        return None, [
            {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": call["name"], "arguments": json.dumps(call["arguments"], ensure_ascii=False)}}
            for call in value["tool_calls"]
        ]
    content = value["content"]
    return (content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)), []


def _chosen(tools: list[Tool], choice: str | dict[str, Any]) -> tuple[list[Tool], str]:
    """The tools this turn may call and how: "auto", "required" or "named"."""
    if isinstance(choice, str):
        if choice not in ("auto", "required"):
            raise InvalidRequest(f"unknown tool_choice {choice!r}", param="tool_choice")
        return tools, choice
    if choice.get("type") == "allowed_tools":  # {"type": "allowed_tools", "allowed_tools": {mode, tools}}
        allowed = choice.get("allowed_tools") or {}
        names = {(t.get("function") or {}).get("name") for t in allowed.get("tools") or ()}
        subset = [t for t in tools if t.function.name in names]
        if not subset or allowed.get("mode") not in ("auto", "required"):
            raise InvalidRequest("tool_choice.allowed_tools needs a mode (auto or required) and tools that are "
                                 "among `tools`", param="tool_choice")
        return subset, allowed["mode"]
    name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
    named = [t for t in tools if t.function.name == name]
    if not named:
        known = ", ".join(t.function.name for t in tools)
        raise InvalidRequest(f"tool_choice names no tool among `tools` ({known}); give "
                             '{"type": "function", "function": {"name": ...}}', param="tool_choice")
    return named, "named"


def _call_schema(tool: Tool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"type": "string", "enum": [tool.function.name]},
                       "arguments": tool.function.parameters or NO_ARGUMENTS},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _object(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {key: schema}, "required": [key], "additionalProperties": False}


def _any(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def _listing(tool: Tool) -> str:
    f = tool.function
    about = f" - {f.description}" if f.description else ""
    return f"- {f.name}{about}. Arguments: {json.dumps(f.parameters or NO_ARGUMENTS)}"
