"""Locust entry point: `locust -f loadtest/ --host http://127.0.0.1:8000`.

Four simulated client apps (personas), each drawing from its own pool of MT-Bench and
Arena-Hard questions. Options (see `locust -f loadtest/ --help`) set the model mix,
API keys, streaming share, think time and CoLM's per-request knobs.
"""

from locust import events

from loadtest._hooks import register
from loadtest._user import ColmAppUser

register(events)


class MathApp(ColmAppUser):
    persona = "math"


class CodingApp(ColmAppUser):
    persona = "coding"


class WritingApp(ColmAppUser):
    persona = "writing"


class ChatApp(ColmAppUser):
    persona = "chat"
