"""The request's messages as the collaboration sees them: the history and the question."""

from __future__ import annotations

from dataclasses import dataclass

from colm_serve.config import SpecialistConfig
from colm_serve.errors import InvalidRequest
from colm_serve.protocol.openai import ChatMessage


@dataclass
class Conversation:
    history: list[ChatMessage]
    question: ChatMessage

    @classmethod
    def parse(cls, messages: list[ChatMessage]) -> "Conversation":
        if messages[-1].role != "user":
            raise InvalidRequest("the last message must come from the user", param="messages")
        return cls(history=messages[:-1], question=messages[-1])

    def text_history(self) -> list[dict]:
        return [{"role": _text_role(m.role), "content": m.text()} for m in self.history]

    def question_for(self, spec: SpecialistConfig) -> str | list:
        if spec.vision and self.question.has_image():
            return [p.model_dump(exclude_none=True) for p in self.question.content]
        return self.question_text()

    def question_text(self) -> str:
        text = self.question.text()
        return text + ("\n[An image was attached; experts who can see it describe it.]" if self.question.has_image() else "")


def _text_role(role: str) -> str:
    return "system" if role == "developer" else role
