"""The Flask app Label Studio talks to: /health, /setup, /predict, /webhook, /versions, /metrics.

Every body is bounded before any work: its size (``ALVAR_MAX_REQUEST_BYTES``, 413), its JSON (strict UTF-8 with
no lone surrogates, at most :data:`MAX_JSON_DEPTH` levels and a bounded number of objects and arrays), tasks per
request and characters per text (``ALVAR_MAX_TASKS_PER_REQUEST``, ``ALVAR_MAX_TEXT_CHARS``) and the label config's
names and choices (they are repeated in every task's answer). What fails these checks is a 400 naming the limit.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from flask import Flask, Response, g, jsonify, request
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError
from werkzeug.datastructures import Authorization
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from alvar.attribute_model import AttributeModelError
from alvar.backend.dispatcher import ReactionFactory
from alvar.backend.metrics import BackendMetrics
from alvar.backend.model import AlvarModel
from alvar.labelstudio.choices_control import LabelConfigError
from alvar.labelstudio.task_kinds import Control, TaskKind, task_kind
from alvar.labelstudio.webhook import TRAINING_ACTION, WebhookError
from alvar.queues import redis_connection
from alvar.settings import WEBHOOK_SECRET_HEADER, Settings

log = logging.getLogger(__name__)

# Label Studio's payloads nest about ten levels; deeper JSON would reach Python's recursion limit downstream
# (repr, pickle), so it is refused at the door.
MAX_JSON_DEPTH = 64
# Objects and arrays a body may hold, per task allowed in a request: a Label Studio task with its annotations
# and predictions holds a few dozen. It bounds parsing: 10 MB of ``[],`` would otherwise become 300 MB of lists.
JSON_CONTAINERS_PER_TASK = 64
# The Choices control's names (from_name, to_name, the data key) are repeated in each task's prediction, and its
# labels are matched per task and listed in reasons: long names or thousands of choices multiply a small body.
MAX_NAME_CHARS = 200
MAX_CHOICES = 1000
# Threads kept free of /predict for /webhook (Label Studio waits 1 s) and /health.
SPARE_THREADS = 2
RETRY_AFTER_SECONDS = 5


class BadRequest(ValueError):
    """A request the backend cannot act on; answered 400 with the message as the reason."""


class Busy(Exception):
    """Every /predict place is taken; answered 429 with Retry-After."""


class PredictionGate:
    """Admission control of /predict: ``running`` scored at once, more wait, past ``admitted`` in all: :class:`Busy`.

    The server has a fixed number of request threads; a waiting prediction holds one. Refusing at once what would
    leave fewer than :data:`SPARE_THREADS` free keeps a thread for /webhook and /health whatever /predict gets.
    """

    def __init__(self, running: int, admitted: int) -> None:
        self.admitted = max(1, admitted)
        self._slots = threading.BoundedSemaphore(max(1, min(running, self.admitted)))
        self._lock = threading.Lock()
        self._inside = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._lock:
            if self._inside >= self.admitted:
                raise Busy(f"{self._inside} predictions are running or waiting (the most this backend admits); "
                           f"retry in {RETRY_AFTER_SECONDS} s")
            self._inside += 1
        try:
            with self._slots:
                yield
        finally:
            with self._lock:
                self._inside -= 1


# C0 and C1 controls (CR, LF, ESC...), line and paragraph separators and bidirectional overrides.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with its control characters escaped (``\\n``, ``\\x1b``): a client cannot forge log lines."""
    return _UNPRINTABLE.sub(lambda match: ascii(match.group())[1:-1], text)


class EscapingFormatter(logging.Formatter):
    """Log lines whose message (request paths, waitress's own "while serving /path") cannot hold a line break;
    a traceback, appended after the message, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging.Formatter's naming
        return printable(super().formatMessage(record))


def configure_logging() -> None:
    """INFO and above to stderr, each record on one line (see :class:`EscapingFormatter`)."""
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` levels deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend([(child, depth + 1) for child in children if isinstance(child, (dict, list))])
    return False


def parse_json_object(body: bytes, max_containers: int) -> dict[str, Any]:
    """A request body as a JSON object, or :class:`BadRequest` saying why not.

    orjson is strict where the standard library is lenient: invalid UTF-8, lone surrogates (``"\\ud800"``),
    NaN and Infinity are errors, not values that fail later in the tokenizer, Redis or the response.
    """
    containers = body.count(b"{") + body.count(b"[")
    if containers > max_containers:
        raise BadRequest(f"the body holds {containers} JSON objects and arrays; the most is {max_containers} "
                         f"({JSON_CONTAINERS_PER_TASK} per task of ALVAR_MAX_TASKS_PER_REQUEST)")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    if json_depth_exceeds(payload, MAX_JSON_DEPTH):
        raise BadRequest(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    return payload


def _check_names(named: dict[str, str], choices: tuple[str, ...], control_name: str) -> None:
    """Refuse (400) more than :data:`MAX_CHOICES` choices, or a name or choice longer than :data:`MAX_NAME_CHARS`."""
    if len(choices) > MAX_CHOICES:
        raise BadRequest(f"<Choices name={control_name[:MAX_NAME_CHARS]!r}> has {len(choices)} "
                         f"choices; the most is {MAX_CHOICES}")
    named = named | {f"Choice #{index} value": label for index, label in enumerate(choices)}
    for what, name in named.items():
        if len(name) > MAX_NAME_CHARS:
            raise BadRequest(f"the label config's {what} is {len(name)} characters long; "
                             f"the most is {MAX_NAME_CHARS}")


def bounded_control(label_config: Any) -> tuple[TaskKind[Any], Control]:
    """The project's kind and the label config's control (a generative project's when it has a ``<TextArea>``),
    refused (400) when its names or values exceed the bounds."""
    kind = task_kind(label_config)
    control = kind.control(label_config)
    declared = kind.control_names(control)
    _check_names(declared.names, tuple(declared.values), declared.values_owner)
    return kind, control


def check_tasks(tasks: list[Any], kind: TaskKind[Any], control: Control, settings: Settings) -> None:
    """Refuse (400) more tasks than ALVAR_MAX_TASKS_PER_REQUEST or a text longer than ALVAR_MAX_TEXT_CHARS (in a
    generative project, the teacher's draft too: it comes back as the prediction).

    A task without a usable text is left to the predictor, which answers it with its own error entry.
    """
    if len(tasks) > settings.max_tasks_per_request:
        raise BadRequest(f"the request has {len(tasks)} tasks; ALVAR_MAX_TASKS_PER_REQUEST is "
                         f"{settings.max_tasks_per_request}")
    for position, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            continue
        for what, value in kind.bounded_texts(task, control).items():
            length = len(value if isinstance(value, str) else str(value)) if value is not None else 0
            if length > settings.max_text_chars:
                raise BadRequest(f"task #{position} has a {what} of {length} characters; ALVAR_MAX_TEXT_CHARS "
                                 f"is {settings.max_text_chars}")


@contextmanager
def client_errors(what: str) -> Iterator[None]:
    """Turn a type or value error raised while reading a client's body into a 400 (logged with its trace)."""
    try:
        yield
    except (BadRequest, LabelConfigError, WebhookError, AttributeModelError):
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        log.warning("%s: a malformed body raised %s", what, type(error).__name__, exc_info=True)
        raise BadRequest(f"the {what} body has a value of the wrong type or shape "
                         f"({type(error).__name__}: {str(error)[:200]})") from None


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _basic_auth() -> Authorization | None:
    """The request's credentials; None when absent or unreadable (Werkzeug lets the ValueError of a non-ASCII
    base64 payload through)."""
    try:
        return request.authorization
    except ValueError:
        return None


def create_app(settings: Settings, reactions: Sequence[ReactionFactory] = (), model: AlvarModel | None = None) -> Flask:
    """The backend's Flask app; /webhook events go to the reactions built from ``reactions`` (none: ignored)."""
    model = model or AlvarModel(settings, redis_connection(settings), reactions)
    app = Flask("alvar.backend")
    app.json.sort_keys = False  # type: ignore[attr-defined]  # Flask's DefaultJSONProvider
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    open_endpoints = frozenset({"metrics"} if settings.metrics_public else ())
    max_containers = settings.max_tasks_per_request * JSON_CONTAINERS_PER_TASK
    gate = PredictionGate(settings.max_concurrent_predictions, settings.backend_threads - SPARE_THREADS)
    metrics = BackendMetrics(queue_depth=lambda: model.queue.count, model_version=lambda: model.model_version,
                             generation_queue_depth=lambda: model.generation_queue.count)

    def json_body() -> dict[str, Any]:
        return parse_json_object(request.get_data(cache=False), max_containers)

    def _webhook_allowed(payload: dict[str, Any], secret: str | None) -> bool:
        """Project webhooks carry the shared secret. START_TRAINING comes from Label Studio's ML API, which can
        send basic auth but no other header: with basic auth on (checked before every request) it passes."""
        if not settings.webhook_secret or _same(secret, settings.webhook_secret):
            return True
        return payload.get("action") == TRAINING_ACTION and bool(settings.basic_auth_user)

    @app.before_request
    def authenticate() -> Any:
        g.started = time.perf_counter()
        if settings.basic_auth_user and request.endpoint not in open_endpoints:
            auth = _basic_auth()
            if not (auth and auth.type == "basic" and _same(auth.username, settings.basic_auth_user)
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
                        response.get_data(as_text=True)[:300].strip())
        return response

    @app.errorhandler(BadRequest)
    @app.errorhandler(LabelConfigError)
    @app.errorhandler(WebhookError)
    @app.errorhandler(AttributeModelError)
    def bad_request(error: Exception) -> tuple[Response, int]:
        return jsonify(error=str(error)), 400

    @app.errorhandler(Busy)
    def busy(error: Busy) -> Response:
        response = jsonify(error=str(error))
        response.status_code = 429
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> tuple[Response, int]:
        return jsonify(error=f"the request body is larger than ALVAR_MAX_REQUEST_BYTES "
                             f"({settings.max_request_bytes} bytes)"), 413

    @app.errorhandler(RedisError)
    def queues_unreachable(error: RedisError) -> tuple[Response, int]:
        """The one server fault a webhook meets on an ordinary day: what it would have queued, the
        reconciliation sweep queues once Redis is back."""
        log.warning("Redis unreachable (%s): %s %s not queued; the reconciliation sweep will", error,
                    request.method, request.path)
        return jsonify(error="the job queue (Redis) is unreachable; retry later (missed webhooks are "
                             "reconciled within ALVAR_RECONCILE_INTERVAL once it is back)"), 503

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        return jsonify(error=error.description), error.code or 500

    @app.get("/")
    @app.get("/health")
    def health() -> Response:
        return jsonify(status="UP", model_class=type(model).__name__, model_version=model.model_version)

    @app.post("/setup")
    def setup() -> Response:
        payload = json_body()
        schema = payload.get("schema")
        if schema is None:
            raise BadRequest("'schema' (the label config) is missing")
        bounded_control(schema)
        with client_errors("/setup"):
            return jsonify(model.setup(schema, project=payload.get("project")))

    @app.post("/predict")
    def predict() -> Response:
        with gate.turn():
            payload = json_body()
            tasks = payload.get("tasks")
            if not isinstance(tasks, list):
                raise BadRequest("'tasks' must be a list of tasks")
            label_config = payload.get("label_config")
            if label_config is None:
                raise BadRequest("'label_config' is missing")
            kind, control = bounded_control(label_config)
            check_tasks(tasks, kind, control, settings)
            with client_errors("/predict"):
                results = model.predict(tasks, label_config, project=payload.get("project"))
        metrics.tasks_scored.inc(len(tasks))
        return jsonify(results=results, model_version=model.serving_version(payload.get("project"), kind.served_by))

    @app.post("/webhook")
    def webhook() -> tuple[Response, int]:
        payload = json_body()
        if not _webhook_allowed(payload, request.headers.get(WEBHOOK_SECRET_HEADER)):
            return jsonify(error=f"missing or wrong {WEBHOOK_SECRET_HEADER} header"), 403
        project = payload.get("project")
        if isinstance(project, Mapping) and project.get("label_config") is not None:
            try:
                bounded_control(project["label_config"])
            except LabelConfigError:
                pass  # an unusable config is the reactions' to report ("skipped"), not a bad request
        with client_errors("/webhook"):
            outcome = model.fit(payload)
        log.info("webhook %s for project %s: %.2000s", outcome["action"], outcome["project"], outcome["jobs"])
        return jsonify(outcome), 201

    @app.get("/versions")
    def versions() -> Response:
        """The project's versions: Label Studio names it in a JSON body of the GET (or ``?project=``)."""
        payload = json_body() if request.content_length else {}
        return jsonify(model.versions(payload.get("project", request.args.get("project"))))

    @app.get("/metrics", endpoint="metrics")
    def prometheus() -> Response:
        metrics.refresh()
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    return app
