"""Continuous batching over one llama.cpp context, in a thread of its own.

Each step is one `llama_decode` of a batch that holds the next token of every running sequence
and then as much of the waiting prompts as fits: a new request starts at once instead of waiting
for the batch to finish, as in vLLM and llama.cpp's own server. cffi releases the GIL for the
length of the C call, so the replica's event loop serves requests while a step computes.

A prompt that starts like one already in the KV cache (a finished answer's, kept under its own
sequence id, or a running one's) shares those cells instead of computing them again, as vLLM's
prefix caching does: the same system prompt and question sent to a server many times is paid
for once. On a CPU, where a prompt costs as much compute per token as the answer, this counts.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Step:
    """One written token: its log-probability and the most likely alternatives when asked, and
    the finish reason when it ends the answer."""

    token: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None
    finish: str | None = None


@dataclass(eq=False)
class Sequence:
    """One answer being written. `choose` runs in the batcher's thread with the logits of the
    sequence's row and picks the token; `emit` hands each Step (or the error) to the caller."""

    prompt: list[int]
    choose: Callable[[np.ndarray], Step]
    emit: Callable[[Step | BaseException], None]
    done: bool = False  # set by the batcher when the answer ends, or by a caller that left
    slot: int = -1
    fed: int = 0  # prompt tokens in the KV cache
    cached: int = 0  # of which shared from another sequence's cells, not computed
    pos: int = 0
    last: int = -1
    written: list[int] = field(default_factory=list)

    def in_cache(self) -> list[int]:
        """The tokens whose cells this sequence holds."""
        held = self.pos if self.fed == len(self.prompt) else self.fed
        return (self.prompt + self.written)[:held]


class Batcher:
    def __init__(self, lib: Any, ffi: Any, gguf: str, *, max_num_seqs: int, max_model_len: int,
                 threads: int, batch_tokens: int, kept_prefixes: int = 0, cores: set[int] | None = None) -> None:
        self._lib, self._ffi = lib, ffi
        self._cores = cores
        params = lib.llama_model_default_params()
        params.n_gpu_layers = 0
        self._model = lib.llama_model_load_from_file(gguf.encode(), params)
        if self._model == ffi.NULL:
            raise RuntimeError(f"llama.cpp could not load {gguf}")
        ids = max_num_seqs + kept_prefixes
        self._ctx = lib.llama_init_from_model(self._model, self._context_params(
            ids * max_model_len, ids, threads, batch_tokens))
        if self._ctx == ffi.NULL:
            lib.llama_model_free(self._model)
            raise RuntimeError(f"llama.cpp could not make a context of {max_num_seqs} x {max_model_len} tokens")
        vocab = lib.llama_model_get_vocab(self._model)
        self.n_vocab = lib.llama_vocab_n_tokens(vocab)
        self.eog = np.array([t for t in range(self.n_vocab) if lib.llama_vocab_is_eog(vocab, t)], dtype=np.int64)
        self._batch_tokens = batch_tokens
        self._batch = lib.llama_batch_init(batch_tokens, 0, 1)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._free = list(range(ids))
        self._kept: OrderedDict[int, list[int]] = OrderedDict()  # finished sequences' cells, oldest first
        self._keep_at_most = kept_prefixes
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="llama-batcher", daemon=True)
        self._thread.start()

    def _context_params(self, n_ctx: int, n_seq: int, threads: int, batch_tokens: int) -> Any:
        params = self._lib.llama_context_default_params()
        params.n_ctx, params.n_seq_max = n_ctx, n_seq  # one KV cache, room for every sequence at full length
        params.n_batch = params.n_ubatch = batch_tokens
        params.n_threads = params.n_threads_batch = threads
        return params

    def submit(self, seq: Sequence) -> None:
        if self.error is not None:
            raise RuntimeError(f"the llama.cpp batcher stopped: {self.error!r}")
        self._inbox.put(seq)

    def close(self) -> None:
        if self._thread.is_alive():
            self._inbox.put(None)
            self._thread.join()
        if self._ctx is not None:
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self._ctx)
            self._lib.llama_model_free(self._model)
            self._ctx = None

    def _loop(self) -> None:
        if self._cores:  # this thread's binding: llama.cpp's compute threads start from it and inherit it
            os.sched_setaffinity(0, self._cores)
        try:
            while self._take_new():
                self._step()
        except BaseException as exc:  # the engine is broken: every caller hears it, health checks fail
            self.error = exc
            self._fail_everyone(exc)

    def _take_new(self) -> bool:
        """Move submitted sequences in, blocking only while there is nothing to compute; False on close."""
        block = not self._running and not self._waiting
        while True:
            try:
                seq = self._inbox.get(block=block)
            except queue.Empty:
                break
            if seq is None:
                return False
            self._waiting.append(seq)
            block = False
        while self._waiting and (self._free or self._kept):
            seq = self._waiting.popleft()
            if not seq.done:  # its caller may have left while it waited
                self._start(seq)
        return True

    def _start(self, seq: Sequence) -> None:
        source, shared = self._longest_prefix(seq.prompt)
        if self._free:
            seq.slot = self._free.pop()
        elif source in self._kept:  # no id free: the kept sequence it starts like becomes it
            del self._kept[source]
            self._lib.llama_kv_self_seq_rm(self._ctx, source, shared, -1)
            seq.slot = source
        else:
            seq.slot = self._forget_oldest()
        if shared and source != seq.slot:
            self._lib.llama_kv_self_seq_cp(self._ctx, source, seq.slot, 0, shared)
        seq.fed = seq.cached = shared
        self._running.append(seq)

    def _longest_prefix(self, prompt: list[int]) -> tuple[int, int]:
        """The sequence whose cells begin with most of `prompt`, and how many; the last prompt
        token is always computed, since its logits give the first token of the answer."""
        held = [(slot, tokens) for slot, tokens in self._kept.items()]
        held += [(seq.slot, seq.in_cache()) for seq in self._running]
        best = (-1, 0)
        for slot, tokens in held:
            shared = _common_prefix(prompt, tokens, len(prompt) - 1)
            if shared > best[1]:
                best = (slot, shared)
        return best

    def _forget_oldest(self) -> int:
        slot, _ = self._kept.popitem(last=False)
        self._lib.llama_kv_self_seq_rm(self._ctx, slot, -1, -1)
        return slot

    def _step(self) -> None:
        self._retire([s for s in self._running if s.done])
        if not self._running:
            return
        rows = self._fill()
        status = self._lib.llama_decode(self._ctx, self._batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
        ended = []
        for row, seq in rows:
            logits = np.frombuffer(self._ffi.buffer(self._lib.llama_get_logits_ith(self._ctx, row), self.n_vocab * 4),
                                   dtype=np.float32)
            try:
                step = seq.choose(logits)
            except Exception as exc:  # this request's sampling failed (a bug or a bad parameter): only it ends
                seq.emit(exc)
                ended.append(seq)
                continue
            seq.emit(step)
            seq.last = step.token
            seq.written.append(step.token)
            if step.finish:
                ended.append(seq)
        self._retire(ended)

    def _fill(self) -> list[tuple[int, Sequence]]:
        """The next token of each writing sequence, then prompt chunks; the rows whose logits count."""
        self._batch.n_tokens = 0
        rows = []
        for seq in self._running:
            if seq.fed == len(seq.prompt):
                rows.append((self._add(seq.last, seq.pos, seq.slot, True), seq))
                seq.pos += 1
        room = self._batch_tokens - self._batch.n_tokens
        for seq in self._running:
            if seq.fed == len(seq.prompt) or room == 0:
                continue
            take = min(room, len(seq.prompt) - seq.fed)
            end = seq.fed + take
            for pos in range(seq.fed, end):
                row = self._add(seq.prompt[pos], pos, seq.slot, pos == len(seq.prompt) - 1)
            seq.fed, room = end, room - take
            if end == len(seq.prompt):
                rows.append((row, seq))
                seq.pos = end
        return rows

    def _add(self, token: int, pos: int, slot: int, logits: bool) -> int:
        batch, row = self._batch, self._batch.n_tokens
        batch.token[row], batch.pos[row], batch.n_seq_id[row] = token, pos, 1
        batch.seq_id[row][0], batch.logits[row] = slot, logits
        batch.n_tokens = row + 1
        return row

    def _retire(self, seqs: list[Sequence]) -> None:
        for seq in seqs:
            self._running.remove(seq)
            seq.done = True
            held = seq.in_cache()
            if self._keep_at_most and held:
                self._kept[seq.slot] = held
                if len(self._kept) > self._keep_at_most:
                    self._free.append(self._forget_oldest())
            else:
                self._lib.llama_kv_self_seq_rm(self._ctx, seq.slot, -1, -1)
                self._free.append(seq.slot)

    def _fail_everyone(self, exc: BaseException) -> None:
        stranded = list(self._running) + list(self._waiting)
        while True:
            try:
                seq = self._inbox.get_nowait()
            except queue.Empty:
                break
            if seq is not None:
                stranded.append(seq)
        for seq in stranded:
            seq.emit(exc)


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = 0
    for x, y in zip(a[:limit], b):
        if x != y:
            break
        n += 1
    return n
