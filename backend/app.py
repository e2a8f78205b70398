"""The Flask app Label Studio talks to: /health, /setup, /predict, /webhook, /versions, /metrics."""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException

from alvar.backend.dispatcher import TRAINING_ACTION, WebhookError
from alvar.backend.label_config import LabelConfigError
from alvar.backend.metrics import BackendMetrics
from alvar.backend.model import AlvarModel
from alvar.backend.queues import redis_connection
from alvar.settings import WEBHOOK_SECRET_HEADER, Settings, load_settings

log = logging.getLogger(__name__)

OPEN_ENDPOINTS = frozenset({"metrics"})


class BadRequest(ValueError):
    """A request the backend cannot act on; answered 400 with the message as the reason."""


def _json_body() -> dict[str, Any]:
    payload = request.get_json(silent=True, force=True)
    if payload is None:
        raise BadRequest("the body is not valid JSON")
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    return payload


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def create_app(settings: Settings | None = None, model: AlvarModel | None = None) -> Flask:
    settings = settings or load_settings()
    model = model or AlvarModel(settings, redis_connection(settings))
    app = Flask("alvar.backend")
    app.json.sort_keys = False
    metrics = BackendMetrics(queue_depth=lambda: model.queue.count, model_version=lambda: model.model_version,
                             generation_queue_depth=lambda: model.generation_queue.count)

    def _webhook_allowed(payload: dict[str, Any], secret: str | None) -> bool:
        """Project webhooks carry the shared secret. START_TRAINING comes from Label Studio's ML API, which can
        send basic auth but no other header: with basic auth on (checked before every request) it passes."""
        if not settings.webhook_secret or _same(secret, settings.webhook_secret):
            return True
        return payload.get("action") == TRAINING_ACTION and bool(settings.basic_auth_user)

    @app.before_request
    def authenticate() -> Any:
        g.started = time.perf_counter()
        if settings.basic_auth_user and request.endpoint not in OPEN_ENDPOINTS:
            auth = request.authorization
            if not (auth and _same(auth.username, settings.basic_auth_user)
                    and _same(auth.password, settings.basic_auth_pass or "")):
                return Response('{"error": "basic auth required"}', 401, mimetype="application/json",
                                headers={"WWW-Authenticate": 'Basic realm="alvar"'})
        return None

    @app.after_request
    def record(response: Response) -> Response:
        endpoint = request.endpoint or "unknown"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - g.get("started", time.perf_counter()))
        if response.status_code >= 400:
            log.warning("%s %s -> %s %s", request.method, request.path, response.status_code,
                        response.get_data(as_text=True)[:300])
        return response

    @app.errorhandler(BadRequest)
    @app.errorhandler(LabelConfigError)
    @app.errorhandler(WebhookError)
    def bad_request(error: Exception) -> tuple[Response, int]:
        return jsonify(error=str(error)), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        return jsonify(error=error.description), error.code or 500

    @app.get("/")
    @app.get("/health")
    def health() -> Response:
        return jsonify(status="UP", model_class=type(model).__name__, model_version=model.model_version)

    @app.post("/setup")
    def setup() -> Response:
        payload = _json_body()
        schema = payload.get("schema")
        if schema is None:
            raise BadRequest("'schema' (the label config) is missing")
        return jsonify(model.setup(schema))

    @app.post("/predict")
    def predict() -> Response:
        payload = _json_body()
        tasks = payload.get("tasks")
        if not isinstance(tasks, list):
            raise BadRequest("'tasks' must be a list of tasks")
        label_config = payload.get("label_config")
        if label_config is None:
            raise BadRequest("'label_config' is missing")
        results = model.predict(tasks, label_config)
        metrics.tasks_scored.inc(len(tasks))
        return jsonify(results=results, model_version=model.model_version)

    @app.post("/webhook")
    def webhook() -> tuple[Response, int]:
        payload = _json_body()
        if not _webhook_allowed(payload, request.headers.get(WEBHOOK_SECRET_HEADER)):
            return jsonify(error=f"missing or wrong {WEBHOOK_SECRET_HEADER} header"), 403
        outcome = model.fit(payload)
        log.info("webhook %s for project %s: %s", outcome["action"], outcome["project"], outcome["jobs"])
        return jsonify(outcome), 201

    @app.get("/versions")
    def versions() -> Response:
        return jsonify(versions=model.predictor.store.versions(), current=model.model_version)

    @app.get("/metrics", endpoint="metrics")
    def prometheus() -> Response:
        metrics.refresh()
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    return app
