"""Locust event listeners: options, per-run state, /v1/colm/stats samples, files and report.

Distributed mode: workers keep request rows and ship them with each stats report; the
master (or the single local process) samples the stats endpoint and writes the files.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
from locust.env import Environment
from locust.event import Events
from locust.runners import WorkerRunner

from loadtest._colm_stats import StatsRecorder
from loadtest._records import (
    RequestRecord,
    report_html_path,
    requests_csv_path,
    stats_json_path,
    write_records,
)
from loadtest._settings import (
    DEFAULT_MIX,
    LoadSettings,
    add_arguments,
    settings_from_options,
)

logger = logging.getLogger("loadtest")
_STATE_ATTR = "colm_run"
_WORKER_KEY = "colm_records"


class RunState:
    """What one Locust process knows about the current test."""

    def __init__(self, settings: LoadSettings) -> None:
        self.settings = settings
        self.records: list[RequestRecord] = []
        self.stats: StatsRecorder | None = None
        self._next_app = 0
        self._next_per_persona: dict[str, int] = {}

    def new_app(self, persona: str) -> tuple[int, int]:
        """(global index for the API key, index within the persona for the question seed)."""
        app, self._next_app = self._next_app, self._next_app + 1
        mine = self._next_per_persona.get(persona, 0)
        self._next_per_persona[persona] = mine + 1
        return app, mine


def run_state(environment: Environment) -> RunState:
    state = getattr(environment, _STATE_ATTR, None)
    if state is None:
        state = RunState(_settings(environment))
        setattr(environment, _STATE_ATTR, state)
    return state


def _settings(environment: Environment) -> LoadSettings:
    if environment.parsed_options is None:  # Locust used as a library, without its CLI
        return LoadSettings(mix=DEFAULT_MIX)
    return settings_from_options(environment.parsed_options)


def _is_worker(environment: Environment) -> bool:
    return isinstance(environment.runner, WorkerRunner)


def on_test_start(environment: Environment, **_: Any) -> None:
    """Re-read the options (the web UI may have changed them) and start a fresh run."""
    state = RunState(_settings(environment))
    setattr(environment, _STATE_ATTR, state)
    if _is_worker(environment) or not environment.host:
        return
    keys = state.settings.api_keys
    state.stats = StatsRecorder(host=environment.host, api_key=keys[0] if keys else None,
                                interval_s=state.settings.stats_interval_s)
    state.stats.start()


def on_test_stop(environment: Environment, **_: Any) -> None:
    state = run_state(environment)
    if state.stats is not None:
        state.stats.stop()


def on_quitting(environment: Environment, **_: Any) -> None:
    """Write PREFIX_colm_requests.csv, PREFIX_colm_stats.json and the HTML report."""
    options = environment.parsed_options
    prefix = getattr(options, "csv_prefix", None) if options else None
    if _is_worker(environment) or not prefix:
        return
    state = run_state(environment)
    write_records(requests_csv_path(prefix), state.records)
    if state.stats is not None:
        state.stats.stop()  # quitting mid-test (Ctrl-C, SIGTERM) comes before test_stop
        state.stats.save(stats_json_path(prefix), settings=state.settings.model_dump(exclude={"api_keys"}))
    if state.settings.write_report:
        from loadtest.report import (
            build_report,  # matplotlib only when a report is asked for
        )

        summary = build_report(prefix)
        logger.info("CoLM report: %s\n%s", report_html_path(prefix), summary)


def register(events: Events) -> None:
    """Called once by locustfile.py; helper modules register nothing at import time."""
    events.init_command_line_parser.add_listener(add_arguments)
    events.test_start.add_listener(on_test_start)
    events.test_stop.add_listener(on_test_stop)
    events.quitting.add_listener(on_quitting)
    events.init.add_listener(_on_init)


def _on_init(environment: Environment, **_: Any) -> None:
    """Fail fast on bad options, and wire the worker -> master shipping of request rows."""
    run_state(environment)
    # gevent's loop clock is only refreshed when the loop runs; importing this package (the
    # openai SDK, pydantic) takes seconds on a busy host, and Locust's `-t` timer, armed right
    # after this hook, would count that stale time and end the run early.
    gevent.get_hub().loop.update_now()
    # The SDK's HTTP client logs every request at INFO, which buries Locust's own output.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)

    def ship(client_id: str, data: dict[str, Any]) -> None:
        state = run_state(environment)
        data[_WORKER_KEY] = [r.model_dump() for r in state.records]
        state.records.clear()

    def receive(client_id: str, data: dict[str, Any]) -> None:
        rows = data.get(_WORKER_KEY) or []
        run_state(environment).records.extend(RequestRecord.model_validate(r) for r in rows)

    environment.events.report_to_master.add_listener(ship)
    environment.events.worker_report.add_listener(receive)
