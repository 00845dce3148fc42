"""The OpenAI embeddings wire models: the request (strict, like every request) and the response.

`input` takes OpenAI's four shapes: a string, a list of strings, a list of token ids, or a list
of lists of token ids. Its shape is checked before the union is, so that every bad input is a
400 naming `input`, never one naming a branch of the union.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

MAX_INPUTS = 2048  # OpenAI's cap on the inputs of one request

Texts = list[str]
TokenLists = list[list[int]]


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def _check_input(value: Any) -> Any:
    if isinstance(value, str) or _is_ids(value):
        value = [value]
    if not isinstance(value, list):
        raise ValueError("must be a string, a list of strings, a list of token ids or a list of lists of token ids")
    if not value:
        raise ValueError("must not be empty")
    if len(value) > MAX_INPUTS:
        raise ValueError(f"{len(value)} inputs; at most {MAX_INPUTS} fit one request")
    if not (all(isinstance(v, str) for v in value) or all(_is_ids(v) for v in value)):
        raise ValueError("a list must hold only strings, or only non-empty lists of token ids")
    for i, item in enumerate(value):
        if item == "":
            raise ValueError(f"item {i} is an empty string")
        if isinstance(item, list) and min(item) < 0:
            raise ValueError(f"item {i} holds a negative token id")
    return value


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    input: Annotated[str | Texts | list[int] | TokenLists, BeforeValidator(_check_input)] = Field(
        description=f"A string, a list of strings, a list of token ids or a list of lists of token ids "
                    f"(the model's own tokenizer); at most {MAX_INPUTS} inputs."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="Honoured only if it is the model's own dimension.")
    user: str | None = None

    def inputs(self) -> Texts | TokenLists:
        """Always a list: of texts, or of token-id lists (the validator has made it one)."""
        return self.input  # type: ignore[return-value]


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="The vector, or with encoding_format=base64 its little-endian float32 bytes.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage

    @classmethod
    def of(cls, model: str, vectors: np.ndarray, *, tokens: int, encoding_format: str) -> "EmbeddingResponse":
        rows = vectors.astype("<f4")
        if encoding_format == "base64":
            data = [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
        else:
            data = rows.tolist()
        return cls(data=[Embedding(index=i, embedding=e) for i, e in enumerate(data)], model=model,
                   usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens))
