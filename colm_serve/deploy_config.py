"""Offline validation of Serve configs and KubeRay manifests (`colm-serve check-config`).

A deploy config is only read for real when `serve deploy` builds the app on a cluster, which
is late and far from the typo. This module checks it up front with the same models the app
uses: Ray's own `ServeDeploySchema` for the outer shape, then `AppArgs` / `StandInArgs` for
the arguments of our builders, then references between the applications (a server that points
at the embedded upstream app must name a model that app serves).

Ray's schema accepts unknown keys on purpose (forward compatibility), so we also reject keys
that it does not know: in a file we ship, an unknown key is a typo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ValidationError
from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

from colm_serve.config import AppArgs, StandInArgs

APP_IMPORT_PATH = "colm_serve.app:build_app"
STAND_IN_IMPORT_PATH = "colm_serve.stand_in.app:build_stand_in_app"
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "0.0.0.0"}


def validate_file(path: str | Path) -> list[str]:
    """Validate every Serve config in a YAML file (a Serve config or a RayService manifest).

    Returns human-readable lines; raises ValueError naming the file, app and field on error.
    """
    path = Path(path)
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    lines: list[str] = []
    for doc in docs:
        for where, config in _serve_configs(doc, source=str(path)):
            lines.append(f"{where}: serve config")
            lines += [f"  {line}" for line in validate_serve_config(config, source=where)]
    if not lines:
        raise ValueError(f"{path}: no Serve config found (expected `applications:` or a RayService)")
    return lines


def validate_serve_config(doc: dict[str, Any], *, source: str = "serve config") -> list[str]:
    """Validate one Serve config dict; `source` prefixes error messages (a file name, say)."""
    if not isinstance(doc, dict):
        raise ValueError(f"{source}: a Serve config must be a mapping, got {type(doc).__name__}")
    _reject_unknown_keys(doc, ServeDeploySchema, where=f"{source}: top level")
    try:
        schema = ServeDeploySchema.model_validate(doc)
    except ValidationError as exc:
        raise ValueError(f"{source}: {_describe(exc)}") from exc
    lines: list[str] = []
    parsed: dict[str, BaseModel] = {}
    for raw_app, app in zip(doc["applications"], schema.applications):
        where = f"{source}: app {app.name!r}"
        _reject_unknown_keys(raw_app, ServeApplicationSchema, where=where)
        args, line = _validate_app(app, where=where)
        if args is not None:
            parsed[app.name] = args
        lines.append(line)
    _check_local_upstreams(schema, parsed, source=source)
    return lines


def _serve_configs(doc: Any, *, source: str) -> list[tuple[str, dict[str, Any]]]:
    """The Serve configs inside one YAML document: itself, or a RayService's serveConfigV2."""
    if not isinstance(doc, dict):
        return []
    if doc.get("kind") == "RayService":
        name = (doc.get("metadata") or {}).get("name", "?")
        where = f"{source}: RayService {name}"
        embedded = (doc.get("spec") or {}).get("serveConfigV2")
        if not isinstance(embedded, str):
            raise ValueError(f"{where}: spec.serveConfigV2 must be a YAML string")
        try:
            return [(f"{where} spec.serveConfigV2", yaml.safe_load(embedded))]
        except yaml.YAMLError as exc:
            raise ValueError(f"{where}: spec.serveConfigV2 is not valid YAML: {exc}") from exc
    if "applications" in doc:
        return [(source, doc)]
    return []


def _validate_app(app: ServeApplicationSchema, *, where: str) -> tuple[BaseModel | None, str]:
    model = {APP_IMPORT_PATH: AppArgs, STAND_IN_IMPORT_PATH: StandInArgs}.get(app.import_path)
    if model is None:
        return None, f"app {app.name}: {app.import_path} is not a colm_serve builder; Ray's schema only"
    try:
        args = model.model_validate(app.args or {})
    except ValidationError as exc:
        raise ValueError(f"{where}: {_describe(exc, prefix='args')}") from exc
    if isinstance(args, AppArgs):
        summary = (f"{len(args.specialists)} specialists, {len(args.servers)} servers, "
                   f"reference server {args.reference_server}")
    else:
        summary = f"upstream serving {', '.join(args.served_models)} with {args.engine.model}"
    return args, f"app {app.name}: ok ({summary})"


def _check_local_upstreams(schema: ServeDeploySchema, parsed: dict[str, BaseModel], *, source: str) -> None:
    """A server whose base_url is this config's own HTTP proxy must reach an upstream app
    in the same config, and every specialist on it must name a model that app serves."""
    routes = {app.route_prefix: app.name for app in schema.applications if app.route_prefix}
    port = schema.http_options.port
    for app_name, args in parsed.items():
        if not isinstance(args, AppArgs):
            continue
        for server in args.servers:
            url = urlsplit(server.base_url)
            if url.hostname not in _LOOPBACK_HOSTS or (url.port or 80) != port:
                continue
            field = f"{source}: app {app_name!r}: args.servers.{server.name}.base_url"
            target = routes.get(url.path.removesuffix("/").removesuffix("/v1") or "/")
            upstream = parsed.get(target) if target else None
            if not isinstance(upstream, StandInArgs):
                raise ValueError(f"{field}: {server.base_url} is this config's proxy, but no "
                                 f"{STAND_IN_IMPORT_PATH} app has that route prefix; routes: {sorted(routes)}")
            for spec in args.specialists:
                if spec.server == server.name and spec.model not in upstream.served_models:
                    raise ValueError(f"{source}: app {app_name!r}: args.specialists.{spec.name}.model: "
                                     f"{spec.model!r} is not served by app {target!r}; served: {upstream.served_models}")


def _reject_unknown_keys(raw: dict[str, Any], model: type[BaseModel], *, where: str) -> None:
    known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(model.model_fields)}")


def _describe(exc: ValidationError, *, prefix: str = "") -> str:
    """One line per pydantic error, each with its dotted field path."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(err["loc"])) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
