"""The request's messages as the collaboration sees them: the history and the question."""

from __future__ import annotations

from dataclasses import dataclass, field

from colm_serve.client_model import tools
from colm_serve.config import SpecialistConfig
from colm_serve.errors import InvalidRequest
from colm_serve.protocol.openai import ChatMessage


@dataclass
class Conversation:
    history: list[ChatMessage]
    question: ChatMessage
    tool_work: list[ChatMessage] = field(default_factory=list)  # the tool calls and results after the question

    @classmethod
    def parse(cls, messages: list[ChatMessage]) -> "Conversation":
        """The last user message is the question; after it may come only the tool calls made
        for it and their results (an agent's follow-up turn)."""
        last = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
        after = messages[last + 1:] if last is not None else messages
        if last is None or not all(_tool_work(m) for m in after):
            raise InvalidRequest("the last message must come from the user, or be the results of tool calls made "
                                 "for it", param="messages")
        return cls(history=messages[:last], question=messages[last], tool_work=after)

    def text_history(self) -> list[dict]:
        return tools.render(self.history)

    def question_for(self, spec: SpecialistConfig) -> str | list:
        if spec.vision and self.question.has_image():
            return [p.model_dump(exclude_none=True) for p in self.question.content]
        return self.question_text()

    def question_text(self) -> str:
        text = self.question.text()
        text += "\n[An image was attached; experts who can see it describe it.]" if self.question.has_image() else ""
        if self.tool_work:
            text += "\n\n[Tools were called for this question]\n" + "\n".join(t["content"] for t in tools.render(self.tool_work))
        return text


def _tool_work(message: ChatMessage) -> bool:
    return message.role in ("tool", "function") or (message.role == "assistant" and bool(message.tool_calls))
