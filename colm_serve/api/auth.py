"""Client-app identity from `Authorization: Bearer`; keys are compared as SHA-256 digests.

Only labels (a configured name, or a digest prefix) ever reach logs, stats and upstream
calls; the key itself is dropped here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import yaml

from colm_serve.config import ApiKey, AuthConfig
from colm_serve.errors import AuthenticationError
from colm_serve.protocol.caller import Caller


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_keys(config: AuthConfig) -> list[ApiKey]:
    keys = list(config.keys)
    if config.keys_file:
        text = Path(config.keys_file).expanduser().read_text()
        raw = json.loads(text) if config.keys_file.suffix == ".json" else yaml.safe_load(text)
        keys += [ApiKey.model_validate(k) for k in raw or []]
    return keys


class Authenticator:
    def __init__(self, config: AuthConfig) -> None:
        self._keys = {k.key_sha256: k for k in load_keys(config)}
        self._buckets = config.anonymous_labels

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def identify(self, authorization: str | None) -> Caller:
        token = _bearer(authorization)
        if not self.enabled:
            # Open mode: apps that send a key still get a fair share of their own, under one of a
            # fixed number of digest labels, so 10,000 made-up tokens make no more than that.
            return Caller(self.anonymous_label(token)) if token else Caller("anonymous")
        if not token:
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
        digest = hash_key(token)
        for known, key in self._keys.items():
            if hmac.compare_digest(known, digest):
                return Caller(key.name, key.weight, key.admin)
        raise AuthenticationError("invalid API key", code="invalid_api_key")


    def anonymous_label(self, token: str) -> str:
        bucket = int(hash_key(token)[:12], 16) % self._buckets
        return f"anon-{bucket:0{len(str(self._buckets - 1))}d}"


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
