"""A simulated client app: multi-turn sessions of real questions, with think time.

Each session picks a model from --colm-mix and a question from the persona's pool (in a
seeded order, so the same seed gives the same workload), then asks its turns in order.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from typing import ClassVar, Iterator

from locust import User, task
from locust.runners import WorkerRunner

from loadtest._client import TurnError, TurnResult, make_client, run_turn
from loadtest._hooks import run_state
from loadtest._questions import Question, questions_for
from loadtest._records import RequestRecord

METRIC = "METRIC"
logger = logging.getLogger("loadtest")


class ColmAppUser(User):
    """Abstract: locustfile.py makes one concrete class per persona."""

    abstract = True
    persona: ClassVar[str] = "chat"

    def on_start(self) -> None:
        if not self.host:
            raise ValueError("no target: pass --host http://127.0.0.1:8000 (or set it in the web UI)")
        state = run_state(self.environment)
        self.settings = state.settings
        app, within_persona = state.new_app(self.persona)
        # Workers number their apps alike; the worker index keeps labels and seeds apart.
        runner = self.environment.runner
        worker = runner.worker_index if isinstance(runner, WorkerRunner) else None
        self.app = f"{self.persona}-{within_persona}" if worker is None else f"{self.persona}-w{worker}-{within_persona}"
        self.rng = random.Random(f"{self.settings.seed}:{self.app}")
        keys = self.settings.api_keys
        self.client = make_client(base_url=self.host, api_key=keys[app % len(keys)] if keys else "",
                                  timeout_s=self.settings.request_timeout_s)
        self.questions = self._question_order()

    def on_stop(self) -> None:
        self.client.close()

    def wait_time(self) -> float:
        return self.rng.uniform(self.settings.think_min_s, self.settings.think_max_s)

    def _question_order(self) -> Iterator[Question]:
        pool = list(questions_for(self.persona))
        self.rng.shuffle(pool)
        return itertools.cycle(pool)

    @task
    def session(self) -> None:
        mix = self.settings.mix
        model = self.rng.choices(list(mix), weights=list(mix.values()))[0]
        question = next(self.questions)
        messages: list[dict[str, str]] = []
        for turn, text in enumerate(question.turns[: self.settings.max_turns]):
            if turn:
                self.wait()
            messages.append({"role": "user", "content": text})
            answer = self._turn(model=model, messages=messages, question=question, turn=turn)
            if answer is None:
                return  # a failed turn ends the session, as it would for a real app
            messages.append({"role": "assistant", "content": answer})

    def _turn(self, *, model: str, messages: list[dict[str, str]], question: Question, turn: int) -> str | None:
        stream = self.rng.random() < self.settings.stream_ratio
        started = time.time()
        try:
            result = run_turn(self.client, model=model, messages=messages, max_tokens=self.settings.max_tokens,
                              stream=stream, colm=self.settings.colm_options(model))
        except TurnError as e:
            logger.warning("%s: %s turn %d failed: %s", self.app, model, turn, e.message)
            self._fire_failure(model=model, stream=stream, started=started, error=e)
            self._record(model=model, stream=stream, started=started, question=question, turn=turn, error=e)
            return None
        self._fire_success(model=model, stream=stream, started=started, result=result)
        self._record(model=model, stream=stream, started=started, question=question, turn=turn, result=result)
        return result.answer

    def _fire_success(self, *, model: str, stream: bool, started: float, result: TurnResult) -> None:
        fire = self.environment.events.request.fire
        fire(request_type="STREAM" if stream else "CHAT", name=model, start_time=started,
             response_time=result.e2e_s * 1000, response_length=len(result.answer), exception=None, context={})
        metrics = {
            "ttft_ms": None if result.ttft_s is None else result.ttft_s * 1000,
            "server_tokens": result.usage.server_tokens,
            "client_tokens": result.usage.client_tokens,
            "cost_usd_x1e6": result.usage.cost_usd * 1e6,
        }
        for metric, value in metrics.items():
            if value is not None:
                fire(request_type=METRIC, name=f"{metric} {model}", start_time=started,
                     response_time=value, response_length=0, exception=None, context={})

    def _fire_failure(self, *, model: str, stream: bool, started: float, error: TurnError) -> None:
        self.environment.events.request.fire(
            request_type="STREAM" if stream else "CHAT", name=model, start_time=started,
            # A string, not an exception: Locust keeps strings as they are in the failures table.
            response_time=error.e2e_s * 1000, response_length=0, exception=error.short(), context={})

    def _record(self, *, model: str, stream: bool, started: float, question: Question, turn: int,
                result: TurnResult | None = None, error: TurnError | None = None) -> None:
        row = RequestRecord(start_time=started, app=self.app, persona=self.persona, model=model, stream=stream,
                            turn=turn, question_id=question.question_id, ok=result is not None,
                            e2e_ms=(result.e2e_s if result else error.e2e_s) * 1000)
        if result is not None:
            row.ttft_ms = None if result.ttft_s is None else result.ttft_s * 1000
            row.server_tokens, row.client_tokens = result.usage.server_tokens, result.usage.client_tokens
            row.cost_usd, row.completion_tokens = result.usage.cost_usd, result.completion_tokens
        if error is not None:
            row.error = error.short()
        run_state(self.environment).records.append(row)
