"""A real loopback HTTP server that speaks OpenAI's chat-completions API, for tests and benchmarks.

By default it answers like a cooperative LLM: the k variations the prompt asks for, as JSON, or, to a teacher
prompt of a generative project, one output (:func:`default_output`, a counter-statement). A test scripts
misbehaviour per source text (the text between <source> tags): a queue of replies, each with a status code,
a delay, and a body or content, served in order before the default takes over. Every request is recorded.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from alvar.generator.llm import ChatClient

SOURCE = re.compile(r"<source>\n?(.*?)\n?</source>", re.DOTALL)
# A variation prompt's first line names the class the person gave the source (generator/templates/*.j2).
LABEL = re.compile(r'\AClass "([^"\n]*)"')
WANTED = re.compile(r"Write (\d+) (?:more )?variations")
TEACHER = re.compile(r'\{"output":')


@dataclass
class Reply:
    """One scripted answer: ``content`` becomes the assistant message; ``body`` replaces the whole response."""

    content: str | None = None
    status: int = 200
    delay: float = 0.0
    body: dict[str, Any] | None = None


def source_of(messages: list[dict[str, Any]]) -> str:
    for message in messages:
        if message.get("role") != "user":
            continue
        match = SOURCE.search(str(message.get("content", "")))
        if match:
            return match.group(1).strip()
    return ""


def label_of(messages: list[dict[str, Any]]) -> str | None:
    """The person's label a variation request is for (its first user turn), None for other requests."""
    for message in messages:
        if message.get("role") == "user":
            match = LABEL.match(str(message.get("content", "")))
            return match.group(1) if match else None
    return None


def wanted(messages: list[dict[str, Any]]) -> int:
    match = WANTED.search(str(messages[-1].get("content", "")))
    return int(match.group(1)) if match else 3


def is_teacher_prompt(messages: list[dict[str, Any]]) -> bool:
    """A request of the teacher job: its system turn asks for ``{"output": ...}``."""
    return any(message.get("role") == "system" and TEACHER.search(str(message.get("content", "")))
               for message in messages)


def default_output(source: str) -> str:
    """The default teacher answer's output: a counter-statement that mentions the input's first words (never
    the whole input, so it is no echo)."""
    words = source.split()
    opening = " ".join(words[:min(3, len(words) - 1)])
    return f'Saying "{opening} ..." does not make it true: every group deserves respect.'


def default_variations(source: str, count: int, offset: int = 0) -> list[str]:
    return [f"{source} (said another way, take {offset + number})" for number in range(1, count + 1)]


class ChatServer:
    """``with ChatServer() as llm:`` then point OPENAI_BASE_URL at ``llm.base_url``."""

    def __init__(self, latency: float = 0.0, json_schema: bool = True) -> None:
        self.latency = latency
        self.json_schema = json_schema
        self.requests: list[dict[str, Any]] = []
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, source: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[source.strip()].extend(replies)

    def requests_for(self, source: str, label: str | None = None) -> list[dict[str, Any]]:
        """The requests about ``source``; with ``label``, only the variation requests for that label."""
        with self._lock:
            return [request for request in self.requests if source_of(request["messages"]) == source.strip()
                    and (label is None or label_of(request["messages"]) == label)]

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_reply(self, source: str) -> Reply | None:
        with self._lock:
            queue = self._scripts.get(source)
            return queue.popleft() if queue else None

    def _answer(self, request: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        messages = request.get("messages") or []
        with self._lock:
            self.requests.append(request)
        if "response_format" in request and not self.json_schema:
            return 400, {"error": {"message": "response_format of type json_schema is not supported",
                                   "type": "invalid_request_error"}}, self.latency
        source = source_of(messages)
        reply = self._next_reply(source) or Reply()
        if reply.status != 200 or reply.body is not None:
            return reply.status, reply.body or {"error": {"message": f"scripted {reply.status}"}}, reply.delay
        offset = sum(1 for message in messages if message.get("role") == "assistant") * 100
        if reply.content is not None:
            content = reply.content
        elif is_teacher_prompt(messages):
            content = json.dumps({"output": default_output(source)})
        else:
            content = json.dumps({"variations": default_variations(source, wanted(messages), offset)})
        prompt_tokens = sum(len(str(message.get("content", ""))) for message in messages) // 4
        completion_tokens = max(1, len(content) // 4)
        return 200, {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", "loopback"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }, self.latency + reply.delay

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                try:
                    request = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "the body is not JSON"}})
                    return
                status, body, delay = server._answer(request)
                if delay:
                    time.sleep(delay)
                self._send(status, body)

            def _send(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    return

        return Handler


def client_for(server: ChatServer, cache_dir: Path, **options: Any) -> ChatClient:
    """alvar's real LLM client pointed at ``server`` (prices 1 and 2 USD per million tokens, for cost checks)."""
    settings: dict[str, Any] = {"model": "loopback-1", "base_url": server.base_url, "api_key": "test",
                                "timeout": 5.0, "max_retries": 3, "input_price": 1.0, "output_price": 2.0,
                                "cache_dir": cache_dir, **options}
    return ChatClient(**settings)
