"""The unary upstream request: one JSON POST over a kept-alive aiohttp session.

Every pass-through and guidance call crosses this, so it is kept to what the wire needs. The
openai SDK's request path (options, header and URL building, its httpx-shaped transport over
aiohttp) costs several times the POST itself in CPU, and a ServerProxy replica is one process
on one core for all callers of its server. Failures leave as the SDK's error classes, so the
retry loop and the breaker judge both paths alike. Streams use the SDK: their per-request cost
is spread over the whole answer.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

import aiohttp
import httpx2
import openai
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

USER_AGENT = f"colm-serve/{version('colm-serve')}"
_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


class JsonPost:
    """POSTs to `base_url` + path with our key; the session opens on the first call, in the
    replica's event loop, and is shared by every call after it."""

    def __init__(self, base_url: str, api_key: str, *, organization: str | None = None, project: str | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                         "Accept": "application/json", "User-Agent": USER_AGENT}
        # What the SDK sends from OPENAI_ORG_ID / OPENAI_PROJECT_ID, so both paths bill one account.
        self._headers.update({k: v for k, v in (("OpenAI-Organization", organization), ("OpenAI-Project", project)) if v})
        self._proxy, self._proxy_auth = env_proxy(self._base)
        self._session: aiohttp.ClientSession | None = None

    async def post(self, path: str, body: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """The answer's JSON object; anything else leaves as one of the SDK's errors."""
        url = self._base + path
        try:
            # No redirects followed, as with the SDK: a 3xx from a provider is an error to see.
            async with self._open().post(url, data=json.dumps(body), headers=self._headers, allow_redirects=False,
                                         proxy=self._proxy, proxy_auth=self._proxy_auth,
                                         timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                raw = await resp.read()
                status, headers = resp.status, dict(resp.headers)
        except TimeoutError as exc:  # asyncio's timeouts are this class (Python 3.11+)
            raise openai.APITimeoutError(request=httpx2.Request("POST", url)) from exc
        except aiohttp.ClientError as exc:
            raise openai.APIConnectionError(message=f"Connection error: {type(exc).__name__}",
                                            request=httpx2.Request("POST", url)) from exc
        if status >= 300:
            raise status_error(url, status, headers, raw)
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise openai.APIResponseValidationError(_response(url, status, headers, raw), raw.decode(errors="replace")[:300],
                                                    message="the upstream's answer is not a JSON object")
        return answer

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No connection cap: the fair queue already bounds the calls in flight, and a second
            # bound here could only hold a call that has its slot.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300))
        return self._session

    @property
    def closed(self) -> bool:
        return self._session is None or self._session.closed

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def env_proxy(base_url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """HTTP(S)_PROXY and NO_PROXY for this upstream, read once, as the SDK's httpx client reads
    them when it is built. aiohttp's own `trust_env` reads the environment and ~/.netrc again
    on every request, in two worker-thread round trips, on the replica every caller of this
    server shares."""
    try:
        return get_env_proxy_for_url(URL(base_url))
    except LookupError:
        return None, None


def status_error(url: str, status: int, headers: dict[str, str], raw: bytes) -> openai.APIStatusError:
    """The SDK's error for an upstream's non-2xx answer, its `error` object as the body."""
    response = _response(url, status, headers, raw)
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode(errors="replace") or None
    if isinstance(body, dict) and "error" in body:
        body = body["error"]
    cls = _STATUS_ERRORS.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return cls(f"Error code: {status} - {body}", response=response, body=body)


def _response(url: str, status: int, headers: dict[str, str], raw: bytes) -> httpx2.Response:
    """The answer as the SDK's errors carry it (they read its status and headers)."""
    return httpx2.Response(status, headers=headers, content=raw, request=httpx2.Request("POST", url))
