"""A bounded fuzzer of the ML backend: a real `alvar backend` process, a real trained model, a real Redis.

    python bench/fuzz_backend.py [--redis-url redis://127.0.0.1:6379/14] [--mutations 1200] [--seed 0]
                                 [--model-dir DIR] [--json report.json]

Loopback only. It trains a 1-epoch learner on a few bootstrap texts (unless --model-dir), starts the backend
with basic auth and a webhook secret, and sends: mutated Label Studio bodies to /setup, /predict and /webhook
(wrong types, lone surrogates, nested values, junk tasks, annotations and results), hand-built hostile bodies
(huge, deep, oversized, too many tasks or choices, invalid UTF-8, NaN), bad credentials, odd paths and methods,
malformed HTTP over raw sockets, half-open sockets, and concurrent 1,000-task predictions while it times
/webhook and /health. It prints a table and checks: no answer 5xx (an unknown transfer coding, which RFC 9112
lets a server answer 501, is a 400 here too), no connection closed without an answer (a closed connection is not
an answered request; see CLOSED_CONNECTIONS_BOUND), every prediction of the load
answered 200 with one result per task (429 only where the load has more clients than the backend admits
predictions: its documented back-pressure, and then still most answered), the process alive, RSS after within
1.2x of RSS before (measured once a warm-up of concurrent predictions leaves RSS steady; docs/guarantees.md reports
1.02-1.03x with the backend's one malloc arena), /webhook and /health under 1 s during the predictions. Exit
status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
from backend_under_test import backend_process, healthy, rss_mb, train_model
from hostile_requests import (
    AUTH,
    HOOK,
    PASSWORD,
    USER,
    encode,
    hostile_requests,
    mutate,
    predict_body,
    raw_requests,
    send_raw,
    setup_body,
    texts_sample,
    webhook_body,
)

from alvar.backend.app import SPARE_THREADS
from alvar.settings import load_settings

LATENCY_BOUND_S = 1.0
RSS_GROWTH_BOUND = 1.2
# Every request gets an answer, if only a 4xx: the raw 40 MiB chunked upload too, which waitress answers 413 and
# resets once the body passes ALVAR_MAX_REQUEST_BYTES (send_raw reads while it sends).
CLOSED_CONNECTIONS_BOUND = 0
CLOSED = "closed"
RAW = "raw "
# A load prediction answered 200 with one result per task it carried.
FULL_ANSWER = "200 with a result per task"
# As many clients as the backend admits predictions with its default 8 threads (2 are kept spare).
WARM_UP_CLIENTS = 6
# The warm-up stops once a round grows RSS by under 3 % (at most 5 rounds).
WARM_UP_STEADY = 1.03
WARM_UP_MAX_ROUNDS = 5


@dataclass
class Report:
    """What the fuzzer saw; ``failures`` lists the checks that did not hold."""

    requests: int = 0
    closed_requests: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    alive: bool = False
    warm_up_rounds: int = 0
    warm_up_seconds: float = 0.0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    rss_after_phase_mb: dict[str, float] = field(default_factory=dict)
    half_open_sockets: int = 0
    health_latency_half_open_s: float = 0.0
    concurrent_predictions: int = 0
    prediction_clients: int = 0
    predictions_admitted: int = 0
    predict_statuses: dict[str, int] = field(default_factory=dict)
    webhook_max_latency_s: float = 0.0
    health_max_latency_s: float = 0.0
    forged_log_lines: int = 0
    malformed_bodies_caught: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)


class Tally:
    """Counts answers by status (:data:`CLOSED` when the server hung up without one); keeps 5xx requests and those
    it hung up on."""

    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.server_errors: list[str] = []
        self.closed: list[str] = []
        self._lock = threading.Lock()

    def add(self, status: int | str, what: str) -> None:
        """Count an answer; every 5xx is a server error."""
        with self._lock:
            self.statuses[str(status)] += 1
            if isinstance(status, int) and status >= 500:
                self.server_errors.append(f"{status} {what}"[:300])
            if status == CLOSED:
                self.closed.append(what[:300])

    @property
    def answered(self) -> int:
        """Requests the server answered with a status (a closed connection is none)."""
        return sum(count for status, count in self.statuses.items() if status != CLOSED)


def send(session: requests.Session, url: str, tally: Tally, method: str, path: str, headers: dict[str, str],
         body: bytes, auth: Any = AUTH) -> requests.Response | None:
    """The answer, counted in ``tally``; None when the server closed the connection without one."""
    try:
        response: requests.Response | None = session.request(method, url + path, data=body or None,
                                                              headers=headers, auth=auth, timeout=120)
    except requests.ConnectionError:
        response = None
    tally.add(CLOSED if response is None else response.status_code, f"{method} {path} {body[:200]!r}")
    return response


def prediction_outcome(response: requests.Response | None, tasks: int) -> str:
    """:data:`FULL_ANSWER` for a 200 carrying one result per task, else what came back instead."""
    if response is None:
        return CLOSED
    if response.status_code != 200:
        return str(response.status_code)
    results = response.json().get("results") or []
    return FULL_ANSWER if len(results) == tasks else f"200 with {len(results)} results"


def fuzz_bodies(session: requests.Session, url: str, tally: Tally, count: int, rng: random.Random) -> None:
    """``count`` mutated Label Studio bodies spread over /setup, /predict and /webhook, some with bad auth."""
    texts = texts_sample(8, rng)
    valid: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("/predict", lambda: predict_body(rng.sample(texts, 3))),
        ("/setup", setup_body),
        ("/webhook", lambda: webhook_body(rng.randint(1, 50), rng.choice(["self-harm", "discard"]))),
        ("/webhook", lambda: {"action": "START_TRAINING", "project": {"id": 1}}),
    ]
    bad_auth: list[Any] = [None, (USER, "wrong"), ("", ""), ("\u00e9", PASSWORD), (USER, PASSWORD + "\n")]
    for index in range(count):
        path, build = rng.choice(valid)
        auth = rng.choice(bad_auth) if index % 20 == 0 else AUTH
        headers = {"Content-Type": rng.choice(["application/json", "text/plain", "x/\u00e9"]), **HOOK}
        if rng.random() < 0.1:
            headers.pop("X-Alvar-Secret")
        send(session, url, tally, "POST", path, {k: v.encode().decode("latin-1") for k, v in headers.items()},
             encode(mutate(build(), rng)), auth=auth)


def half_open(url: str, count: int) -> tuple[list[socket.socket], float]:
    """``count`` sockets left mid-request (headers cut, or a body promised and not sent); then /health's time."""
    host, port = url.removeprefix("http://").split(":")
    sockets = []
    for index in range(count):
        sock = socket.create_connection((host, int(port)), timeout=5)
        cut = b"GET /hea" if index % 2 else b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 9999\r\n\r\n{"
        sock.sendall(cut)
        sockets.append(sock)
    time.sleep(0.5)
    started = time.perf_counter()
    requests.get(f"{url}/health", auth=AUTH, timeout=30).raise_for_status()
    return sockets, time.perf_counter() - started


def concurrent_predictions(url: str, tally: Tally, threads: int, rounds: int, tasks: int,
                           rng: random.Random) -> tuple[Counter[str], float, float]:
    """``threads`` clients posting ``tasks``-task predictions while /webhook and /health are timed: the
    predictions' outcomes (:func:`prediction_outcome`), the worst /webhook and /health latencies."""
    body = encode(predict_body(texts_sample(tasks, rng)))
    statuses: Counter[str] = Counter()
    lock = threading.Lock()

    def client() -> None:
        with requests.Session() as session:
            for _ in range(rounds):
                response = send(session, url, tally, "POST", "/predict", {"Content-Type": "application/json"}, body)
                with lock:
                    statuses[prediction_outcome(response, tasks)] += 1

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    worst = {"/webhook": 0.0, "/health": 0.0}
    probe = 0
    with requests.Session() as session:
        while any(worker.is_alive() for worker in workers):
            probe += 1
            for path in worst:
                started = time.perf_counter()
                if path == "/webhook":
                    send(session, url, tally, "POST", path, {"Content-Type": "application/json", **HOOK},
                         encode(webhook_body(1000 + probe, "discard")))
                else:
                    send(session, url, tally, "GET", path, {}, b"")
                worst[path] = max(worst[path], time.perf_counter() - started)
            time.sleep(0.05)
    for worker in workers:
        worker.join()
    return statuses, worst["/webhook"], worst["/health"]


def warm_up(pid: int, url: str, tasks: int, rng: random.Random) -> tuple[float, int]:
    """Large concurrent predictions until RSS is steady, as after a busy morning; the steady RSS in MiB and the
    rounds it took.

    torch keeps scratch memory per request thread, and which of waitress's threads serve a round depends on the
    machine's load: RSS grows until every thread has scored once, so a fixed number of rounds measures the
    warm-up, not the fuzzing, on a busy machine."""
    rss = rss_mb(pid)
    rounds = 0
    while rounds < WARM_UP_MAX_ROUNDS:
        concurrent_predictions(url, Tally(), WARM_UP_CLIENTS, 2, tasks, rng)
        rounds += 1
        time.sleep(1)
        previous, rss = rss, rss_mb(pid)
        if rss <= WARM_UP_STEADY * previous:
            break
    return rss, rounds


def run(redis_url: str, mutations: int, seed: int, model_dir: Path | None, keep_log: Path | None = None,
        concurrent: int = 4, rounds: int = 2, tasks: int = 1000, half_open_count: int = 50) -> Report:
    rng = random.Random(seed)
    report = Report()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="alvar-fuzz-") as tmp:
        work = Path(tmp)
        if model_dir is None:
            model_dir = work / "models"
            train_model(model_dir)
        with backend_process(model_dir, redis_url, work) as (process, url, log_path):
            limit = load_settings().max_request_bytes
            tally = Tally()
            warming = time.perf_counter()
            report.rss_before_mb, report.warm_up_rounds = warm_up(process.pid, url, tasks, rng)
            report.warm_up_seconds = time.perf_counter() - warming
            with requests.Session() as session:
                fuzz_bodies(session, url, tally, mutations, rng)
                report.rss_after_phase_mb["mutated bodies"] = rss_mb(process.pid)
                for method, path, headers, body in hostile_requests(limit, rng):
                    send(session, url, tally, method, path, headers, body)
                report.rss_after_phase_mb["hostile bodies"] = rss_mb(process.pid)
            for data in raw_requests():
                tally.add(send_raw(url, data), f"{RAW}{data[:200]!r}")
            report.rss_after_phase_mb["raw HTTP"] = rss_mb(process.pid)
            sockets, report.health_latency_half_open_s = half_open(url, half_open_count)
            report.half_open_sockets = len(sockets)
            statuses, report.webhook_max_latency_s, report.health_max_latency_s = concurrent_predictions(
                url, tally, concurrent, rounds, tasks, rng)
            for sock in sockets:
                sock.close()
            report.concurrent_predictions = concurrent * rounds
            report.prediction_clients = concurrent
            report.predictions_admitted = load_settings().backend_threads - SPARE_THREADS
            report.predict_statuses = dict(statuses)
            time.sleep(1)
            report.rss_after_mb = rss_mb(process.pid)
            report.alive = process.poll() is None and healthy(url)
            log_lines = log_path.read_text(errors="replace").splitlines()
            report.forged_log_lines = sum(line.startswith("FORGED") for line in log_lines)
            report.malformed_bodies_caught = caught_exceptions(log_lines)
            if keep_log is not None:
                keep_log.write_text("\n".join(log_lines))
    report.requests = tally.answered
    report.closed_requests = tally.closed
    report.statuses = dict(sorted(tally.statuses.items()))
    report.server_errors = tally.server_errors
    report.seconds = time.perf_counter() - started
    report.failures = failures(report, mutations)
    return report


def caught_exceptions(log_lines: list[str]) -> dict[str, int]:
    """The exceptions that malformed bodies raised inside the model (the app answered them 400), by last frame."""
    caught: Counter[str] = Counter()
    for index, line in enumerate(log_lines):
        if "a malformed body raised" not in line:
            continue
        trace = log_lines[index + 1:index + 60]
        end = next((position for position, text in enumerate(trace) if not text.startswith((" ", "Traceback"))),
                   len(trace))
        frames = [text.strip() for text in trace[:end] if text.strip().startswith("File ")]
        error = trace[end] if end < len(trace) else "?"
        caught[f"{error[:120]} at {frames[-1] if frames else '?'}"] += 1
    return dict(caught)


def prediction_failures(report: Report) -> list[str]:
    """The load's predictions must be answered 200 with a result per task. 429 is the backend's back-pressure
    (backend/app.py's PredictionGate): right only when the load has more clients than it admits predictions,
    and then most predictions are still answered."""
    answered = report.predict_statuses.get(FULL_ANSWER, 0)
    overloaded = report.prediction_clients > report.predictions_admitted
    refused = report.predict_statuses.get("429", 0) if overloaded else 0
    found = []
    if answered + refused != report.concurrent_predictions:
        found.append(f"predictions of the load came back {report.predict_statuses} ({report.prediction_clients} "
                     f"clients, {report.predictions_admitted} admitted)")
    if answered * 2 <= report.concurrent_predictions:
        found.append(f"only {answered} of {report.concurrent_predictions} predictions of the load were answered")
    return found


def failures(report: Report, mutations: int) -> list[str]:
    found = prediction_failures(report)
    if report.server_errors:
        found.append(f"{len(report.server_errors)} answers were 5xx")
    if len(report.closed_requests) > CLOSED_CONNECTIONS_BOUND:
        found.append(f"{len(report.closed_requests)} connections closed without an answer")
    if not report.alive:
        found.append("the backend is not alive after the fuzzing")
    if report.rss_after_mb > RSS_GROWTH_BOUND * report.rss_before_mb:
        found.append(f"RSS grew from {report.rss_before_mb:.0f} to {report.rss_after_mb:.0f} MB")
    if max(report.webhook_max_latency_s, report.health_max_latency_s, report.health_latency_half_open_s) \
            >= LATENCY_BOUND_S:
        found.append(f"/webhook or /health took {LATENCY_BOUND_S} s or more")
    if report.forged_log_lines:
        found.append(f"{report.forged_log_lines} forged lines in the backend's log")
    if report.requests < mutations:
        found.append(f"only {report.requests} requests answered")
    return found


def print_table(report: Report) -> None:
    rows: list[tuple[str, object]] = [("requests", report.requests)]
    rows += [(f"  answered {status}", count) for status, count in report.statuses.items() if status != CLOSED]
    rows += [
        ("connections closed without an answer", len(report.closed_requests)),
        ("answers 5xx", len(report.server_errors)),
        ("process alive after", report.alive),
        ("warm-up (rounds / s)", f"{report.warm_up_rounds} / {report.warm_up_seconds:.0f}"),
        ("RSS before / after (MB)", f"{report.rss_before_mb:.0f} / {report.rss_after_mb:.0f}"),
        (f"/health with {report.half_open_sockets} half-open sockets (s)", f"{report.health_latency_half_open_s:.3f}"),
        (f"{report.concurrent_predictions} x 1,000-task predictions ({report.predictions_admitted} admitted at once)",
         report.predict_statuses),
        ("max /webhook latency meanwhile (s)", f"{report.webhook_max_latency_s:.3f}"),
        ("max /health latency meanwhile (s)", f"{report.health_max_latency_s:.3f}"),
        ("forged log lines", report.forged_log_lines),
        ("malformed bodies that raised inside the model (answered 400)", sum(report.malformed_bodies_caught.values())),
        ("wall time (s)", f"{report.seconds:.0f}"),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    for error in report.server_errors[:20]:
        print("5xx:", error)
    for what in report.closed_requests[:20]:
        print("closed without an answer:", what)
    print("checks:", "all hold" if not report.failures else "; ".join(report.failures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
                        help="A Redis the backend may queue jobs in (use a database of its own).")
    parser.add_argument("--mutations", type=int, default=1200, help="Mutated Label Studio bodies to send.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-dir", type=Path, help="A model directory to serve (default: train a small one).")
    parser.add_argument("--json", type=Path, help="Also write the report here as JSON.")
    parser.add_argument("--log", type=Path, help="Keep the backend's log here.")
    args = parser.parse_args()
    report = run(args.redis_url, args.mutations, args.seed, args.model_dir, args.log)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
