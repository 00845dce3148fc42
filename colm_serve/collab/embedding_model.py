"""The router's local sentence encoder, loaded once and shared by `/v1/embeddings` and the
embedding selector.

One thread owns the model: a fast tokenizer is not thread-safe ("Already borrowed" under
concurrent use), so every encode, token count and decode runs there, whoever asks. The
selector gets the model through `selector_encoder` (its `encode` waits on this thread); an
embeddings request runs in chunks, so a chat request's selection never waits behind a whole
2048-input batch.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from colm_serve.collab.selection import load_sentence_encoder
from colm_serve.errors import ContextLengthExceeded, InvalidRequest

CHUNK = 64  # inputs a turn on the encoder's thread


@dataclass
class Embedded:
    vectors: np.ndarray  # one unit-length row an input
    tokens: int  # the inputs' tokens, as the model's tokenizer counts them (no special tokens)


class SentenceEncoder:
    def __init__(self, model: str, *, loader: Callable[[str], Any] = load_sentence_encoder) -> None:
        self.name = model
        self._loader = loader
        self._model: Any = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="colm-encoder")

    def warm(self) -> None:
        """Load the model now (replica start, blocking)."""
        self._thread.submit(self._loaded).result()

    def selector_encoder(self, _name: str = "") -> "_OnThread":
        """For `EmbeddingSelector(encoder_factory=...)`: this model, used on this thread."""
        return _OnThread(self)

    async def embed(self, inputs: Sequence[str] | Sequence[list[int]], *, dimensions: int | None = None) -> Embedded:
        """Unit vectors for texts or token-id lists; a 400 naming `input` or `dimensions` for what
        the model cannot take, before any of it is encoded."""
        loop = asyncio.get_running_loop()
        texts, tokens = await loop.run_in_executor(self._thread, self._prepare, list(inputs), dimensions)
        parts = []
        for start in range(0, len(texts), CHUNK):
            parts.append(await loop.run_in_executor(self._thread, self._encode, texts[start:start + CHUNK], True))
        return Embedded(np.concatenate(parts), tokens)

    # --- on the encoder's thread -------------------------------------------------------

    def _loaded(self) -> Any:
        if self._model is None:
            self._model = self._loader(self.name)
        return self._model

    def _encode(self, texts: list[str], normalize: bool) -> np.ndarray:
        return np.asarray(self._loaded().encode(texts, normalize_embeddings=normalize), dtype=np.float32)

    def _prepare(self, inputs: list, dimensions: int | None) -> tuple[list[str], int]:
        model = self._loaded()
        own = _dimension(model)
        if dimensions is not None and dimensions != own:
            raise InvalidRequest(f"dimensions: {self.name} writes {own}-dimensional vectors only; got {dimensions}",
                                 param="dimensions", code="invalid_value")
        tokenizer = model.tokenizer
        if inputs and isinstance(inputs[0], list):
            vocab = len(tokenizer)
            for i, ids in enumerate(inputs):
                if max(ids) >= vocab:
                    raise InvalidRequest(f"input: item {i} holds token id {max(ids)}, outside {self.name}'s vocabulary "
                                         f"of {vocab} (token ids are read with the model's own tokenizer)", param="input",
                                         code="invalid_value")
            ids = inputs
            texts = [tokenizer.decode(row, skip_special_tokens=True) for row in ids]
        else:
            texts = inputs
            ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        room = model.max_seq_length - tokenizer.num_special_tokens_to_add(pair=False)
        for i, row in enumerate(ids):
            if len(row) > room:
                raise ContextLengthExceeded(f"input: item {i} has {len(row)} tokens; {self.name} reads at most {room} "
                                            f"an input", param="input")
        return texts, sum(len(row) for row in ids)


class _OnThread:
    """The shared model as the embedding selector sees it: `encode` runs on the owner's thread."""

    def __init__(self, owner: SentenceEncoder) -> None:
        self._owner = owner

    def encode(self, texts: list[str], normalize_embeddings: bool = False) -> np.ndarray:
        return self._owner._thread.submit(self._owner._encode, list(texts), normalize_embeddings).result()


def _dimension(model: Any) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())
