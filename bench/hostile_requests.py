"""The requests bench/fuzz_backend.py sends: valid bodies, their mutations, hostile bodies and raw HTTP bytes."""

from __future__ import annotations

import base64
import copy
import json
import os
import random
import socket
import threading
from pathlib import Path
from typing import Any

from alvar.datafiles import read_dataset
from alvar.label_config import load

DATASETS = Path(os.environ.get("ALVAR_DATASETS", Path(__file__).resolve().parents[2] / "shared/datasets"))
BOOTSTRAP = DATASETS / "active-learning-safety" / "bootstrap_labeled.tsv"
CONFIG = load("annotate")
USER, PASSWORD, SECRET = "ls", "fuzz-pass", "fuzz-secret"
AUTH = (USER, PASSWORD)
HOOK = {"X-Alvar-Secret": SECRET}
# Values a mutation puts anywhere in a valid body: wrong types, odd numbers, lone surrogates, control characters.
HOSTILE_VALUES: list[Any] = [
    None, True, False, 0, -1, 2**63, -(2**63) - 1, 10**30, 1.5, -1e308, "", "x", "\ud800", "\udfff", "a\u0000b",
    "\r\nFORGED log line", "\u202e", "é" * 50, "😀", "x" * 5000, [], {}, [None], [[[]]], {"": None}, {"id": {}},
    [1, "a", None], "<View/>", "7.1700000000", "-1", "1e999", {"choices": "label"}, [{"x": 1}] * 20,
]



def texts_sample(count: int, rng: random.Random) -> list[str]:
    texts = read_dataset(BOOTSTRAP).texts
    return [rng.choice(texts) for _ in range(count)]


def predict_body(texts: list[str]) -> dict[str, Any]:
    tasks = [{"id": index + 1, "data": {"text": text}, "meta": {}, "annotations": [], "predictions": []}
             for index, text in enumerate(texts)]
    return {"tasks": tasks, "label_config": CONFIG, "project": "1.1700000000",
            "params": {"login": None, "password": None, "context": None}}


def setup_body() -> dict[str, Any]:
    return {"project": "1.1700000000", "schema": CONFIG, "hostname": "http://localhost:8080",
            "access_token": "token", "model_version": None, "extra_params": {}}


def webhook_body(task_id: int, label: str, action: str = "ANNOTATION_CREATED") -> dict[str, Any]:
    result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]},
               "id": "r1", "origin": "manual"}]
    return {"action": action,
            "annotation": {"id": task_id * 10, "task": task_id, "result": result, "completed_by": 1,
                           "was_cancelled": False, "updated_at": "2024-01-01T00:00:00Z"},
            "task": {"id": task_id, "data": {"text": f"fuzz text {task_id}"}, "annotations": [], "project": 1},
            "project": {"id": 1, "label_config": CONFIG, "title": "fuzz"}}


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) of a JSON value, the places a mutation can change."""
    found: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        node = stack.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else []
        for key in keys:
            found.append((node, key))
            stack.append(node[key])
    return found


def mutate(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """``body`` with one to three places replaced by a hostile value, deleted, or given a junk sibling."""
    body = copy.deepcopy(body)
    for _ in range(rng.randint(1, 3)):
        slots = _slots(body)
        if not slots:
            break
        container, key = rng.choice(slots)
        move = rng.random()
        if move < 0.7:
            container[key] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
        elif move < 0.85 and isinstance(container, dict):
            del container[key]
        elif isinstance(container, dict):
            container[rng.choice(["\ud800", "", "x" * 300, "__proto__", "0"])] = rng.choice(HOSTILE_VALUES)
    return body


def encode(body: Any) -> bytes:
    """JSON as Label Studio's Python sends it (ASCII; a lone surrogate becomes the escape "\\ud800")."""
    return json.dumps(body).encode()


def nested(depth: int) -> bytes:
    return b'{"tasks": ' + b"[" * depth + b"]" * depth + b', "label_config": "x"}'


def hostile_requests(limit_bytes: int, rng: random.Random) -> list[tuple[str, str, dict[str, str], bytes]]:
    """(method, path, headers, body) of hand-built hostile requests, all with valid credentials unless noted."""
    json_type = {"Content-Type": "application/json"}
    many_choices = CONFIG.replace('<Choice value="discard"', "".join(
        f'<Choice value="c{i}"/>' for i in range(1500)) + '<Choice value="discard"')
    long_name = CONFIG.replace('name="label"', f'name="{"n" * 5000}"')
    laughs = ('<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
        + ']><View><Text name="text" value="$text"/><Choices name="label" toName="text">'
        '<Choice value="&i;"/></Choices></View>')
    junk_tasks = b'{"label_config": ' + json.dumps(CONFIG).encode() + b', "tasks": [' + b",".join(
        [b"1"] * ((limit_bytes - 10_000) // 2)) + b"]}"
    bodies: list[tuple[str, bytes]] = [
        ("/predict", nested(70)), ("/predict", nested(1000)), ("/predict", nested(200_000)),
        ("/webhook", b'{"action": "ANNOTATION_CREATED", "project": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ("/predict", b'{"tasks": [' + b",".join([b"[]"] * 2_000_000) + b'], "label_config": "x"}'),
        ("/predict", junk_tasks),
        ("/predict", encode(predict_body(["x" * 25_000]))),
        ("/predict", encode({**predict_body(["a"]), "tasks": [{"data": {"text": [[["deep"] * 50] * 50]}}]})),
        ("/predict", encode({**predict_body(["a"]), "label_config": many_choices})),
        ("/predict", encode({**predict_body(["a"]), "label_config": long_name})),
        ("/predict", encode({**predict_body(["a"]), "label_config": laughs})),
        ("/setup", encode({**setup_body(), "schema": laughs})),
        ("/setup", encode({**setup_body(), "schema": many_choices})),
        ("/setup", encode({**setup_body(), "schema": ["<View/>"]})),
        ("/predict", b'{"tasks": [], "label_config": "\\ud800"}'),
        ("/predict", b'{"tasks": [{"data": {"text": "\\udc00 lone"}}], "label_config": "x"}'),
        ("/predict", b'{"tasks": [{"data": {"text": "ok"}}], "label_config": NaN}'),
        ("/predict", b'{"tasks": [1e999], "label_config": "x"}'),
        ("/predict", b'\xff\xfe{"tasks": []}'), ("/predict", b'{"tasks": "\xc3\x28"}'), ("/predict", b""),
        ("/predict", b"null"), ("/predict", b"[]"), ("/predict", b'"tasks"'), ("/predict", b"{" * 100),
        ("/webhook", b'{"action": "ANNOTATIONS_CREATED", "project": {"id": 1, "label_config": ' +
         json.dumps(CONFIG).encode() + b'}, "annotation": [1, "x", null, {"id": 1, "task": {"id": []}}]}'),
        ("/webhook", encode({**webhook_body(3, "self-harm"), "annotation": {"id": 1, "task": 3, "result": "x"}})),
        ("/webhook", encode({**webhook_body(3, "self-harm"), "annotation": {"id": 1, "task": 3,
                                                                             "result": [1, None, []]}})),
        ("/webhook", encode({**webhook_body(3, "self-harm"), "task": {"id": 3, "data": "text"}})),
        ("/webhook", encode({**webhook_body(3, "self-harm"), "project": {"id": "\ud800"}})),
        ("/webhook", encode({"action": "START_TRAINING", "project": {"id": 2**70}})),
        ("/webhook", encode({"action": ["START_TRAINING"], "project": 1})),
        ("/webhook", encode({**webhook_body(4, "x" * 10_000), "annotation": [
            {"id": i, "task": 4, "result": [{"from_name": "label", "type": "choices",
                                             "value": {"choices": ["nope"]}}]} for i in range(1, 3000)]})),
    ]
    requests_: list[tuple[str, str, dict[str, str], bytes]] = [
        ("POST", path, {**json_type, **HOOK}, body) for path, body in bodies]
    requests_.append(("POST", "/predict", json_type, b"x" * (limit_bytes + 1)))
    for path in ("/health%0aFORGED fake line", "/%0d%0aFORGED", "/predict/../health", "//health", "/health/",
                 "/" + "a" * 8000, "/%00", "/%ff%fe", "/\u202eFORGED", "/metrics?%0aFORGED", "/versions"):
        requests_.append(("GET", path, {}, b""))
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "PROPFIND"):
        requests_.append((method, rng.choice(["/predict", "/health", "/webhook", "/metrics"]), {}, b"{}"))
    return requests_


def raw_requests() -> list[bytes]:
    """Malformed HTTP, sent over a raw socket."""
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode())
    return [
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \xe9\xe9\xe9\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + base64.b64encode(b"\xff\xfe:\xff") + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Digest username=ls, password=fuzz-pass\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Basic\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + basic + b"\r\nTransfer-Encoding: chunked"
        b"\r\nContent-Type: application/json\r\n\r\n" + b"".join(b"100000\r\n" + b"[" * 0x100000 + b"\r\n"
                                                                 for _ in range(40)) + b"0\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n",
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health\r\n\r\n", b"\x00\x01\x02\x03\r\n\r\n", b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /health%0aFORGED HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health\x1b[31mFORGED HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + basic + b"\r\nContent-Length: 40\r\n"
        b"Expect: 100-continue\r\n\r\n",
    ]


def send_raw(url: str, data: bytes, timeout: float = 5.0) -> int | str:
    """The status of the answer to raw bytes, or "closed" when the server closed without one.

    The bytes go out from a thread while this one reads: a server may answer before the body is all sent (a 413 for
    an oversized upload) and reset the connection, and that answer counts."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sender = threading.Thread(target=_send_all, args=(sock, data), daemon=True)
        sender.start()
        try:
            answer = sock.recv(64)
        except OSError:
            answer = b""
        sender.join(timeout)
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else "closed"


def _send_all(sock: socket.socket, data: bytes) -> None:
    """Send ``data`` and half-close; a server that answered and closed first ends the sending (its answer counts)."""
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
