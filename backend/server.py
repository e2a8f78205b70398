"""The ML backend's production server (`alvar backend`): waitress, bounded by alvar's settings.

Waitress reads each request whole on its I/O thread (bodies past 512 KB spill to a temporary file) before a
request thread sees it, so a client that sends half a request, or nothing, holds a socket and no thread; it is
closed after :data:`CHANNEL_TIMEOUT` idle seconds. Bodies over ALVAR_MAX_REQUEST_BYTES are refused (413) as soon
as their Content-Length (or, chunked, their size so far) shows it. ALVAR_BACKEND_THREADS request threads serve
the app, whose /predict admission control keeps two of them free for /webhook and /health.
"""

from __future__ import annotations

import resource

from flask import Flask
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import create_server
from waitress.utilities import BadRequest, ServerNotImplemented

from alvar.settings import Settings

# Seconds a connection may sit idle (no byte received, no request in progress) before it is closed.
CHANNEL_TIMEOUT = 30
# Open connections at once; past it, new ones wait in the listen backlog. Half-open ones count until closed.
CONNECTION_LIMIT = 1000
DEFAULT_OUTBUF_HIGH_WATERMARK = 16 * 1024 * 1024


def _raise_open_files_limit(needed: int) -> None:
    """Lift the soft limit of open files toward ``needed`` (each connection is a file), within the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        ceiling = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))


class ClientErrorParser(HTTPRequestParser):
    """Waitress answers a transfer coding it does not implement (``Transfer-Encoding: gzip, chunked``) with 501,
    as RFC 9112 allows; alvar's rule is that nothing a client sends gets a 5xx, so it goes out as a 400."""

    def received(self, data: bytes) -> int:
        consumed = super().received(data)
        error = getattr(self, "error", None)  # waitress sets it while parsing; it has no annotations
        if isinstance(error, ServerNotImplemented):
            self.error = BadRequest(error.body)
        return consumed


class ClientErrorChannel(HTTPChannel):
    parser_class = ClientErrorParser


def serve(app: Flask, settings: Settings, host: str, port: int) -> None:
    """Serve the backend app with waitress, bounded by the settings, until interrupted."""
    _raise_open_files_limit(CONNECTION_LIMIT + 64)
    server = create_server(
        app,
        host=host,
        port=port,
        threads=settings.backend_threads,
        # waitress refuses a body whose size reaches this; one more byte than allowed.
        max_request_body_size=settings.max_request_bytes + 1,
        channel_timeout=CHANNEL_TIMEOUT,
        connection_limit=CONNECTION_LIMIT,
        asyncore_use_poll=True,
        # A thread writing a response waits while more than this is unsent to a client that does not read.
        # Responses stay within a few times their request (ids echoed in per-task errors, JSON escapes), and
        # past 1 MB they are buffered in a temporary file: only such a client can hold a thread.
        outbuf_high_watermark=max(DEFAULT_OUTBUF_HIGH_WATERMARK, 8 * settings.max_request_bytes),
        ident="alvar",
    )
    server.channel_class = ClientErrorChannel
    server.print_listen("Serving on http://{}:{}")
    server.run()
