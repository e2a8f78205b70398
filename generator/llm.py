"""The LLM client: the ``openai`` SDK against any OpenAI-compatible chat-completions endpoint.

Retries with exponential backoff on 429, 5xx, timeouts and connection errors are the SDK's own
(``max_retries``; it honours ``Retry-After``). Every request carries ``max_tokens``, sized by the caller
(``VariationPrompt.max_tokens``). The cache on disk, keyed by (model, temperature, messages), holds only what
the caller accepted (``remember``): a refusal, an unreadable answer or one from which nothing passed screening is
never stored, so a re-run asks the endpoint again instead of replaying it for 90 days; a screened answer is
replayed, so re-running a job — after a crash, say — costs nothing. Structured output (``response_format`` with a JSON
schema) is asked for until the endpoint rejects it once; after that the prompt's own JSON instruction and the
robust parser carry on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import diskcache
import openai

from alvar.errors import AlvarError
from alvar.settings import Settings

log = logging.getLogger(__name__)

CACHE_TTL_SECONDS = 90 * 24 * 3600
# Part of every cache key: entries written before only accepted answers were stored (raw answers, refusals
# among them) are never read.
CACHE_FORMAT = "accepted-v1"
VARIATIONS_SCHEMA: Any = {  # the openai SDK types it as its ResponseFormat models; a dict is what goes out
    "type": "json_schema",
    "json_schema": {
        "name": "variations",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"variations": {"type": "array", "items": {"type": "string"}}},
            "required": ["variations"],
            "additionalProperties": False,
        },
    },
}
OUTPUT_SCHEMA: Any = {  # a generative project's teacher answers one output
    "type": "json_schema",
    "json_schema": {
        "name": "output",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"output": {"type": "string"}},
            "required": ["output"],
            "additionalProperties": False,
        },
    },
}


class LLMNotConfigured(AlvarError, RuntimeError):
    """Neither OPENAI_BASE_URL nor OPENAI_API_KEY is set."""


@dataclass
class Usage:
    """Tokens and estimated cost of LLM requests; cached answers count as requests that cost nothing."""

    requests: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def __iadd__(self, other: Usage) -> Usage:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cost_usd": round(self.cost_usd, 6)}


@dataclass(frozen=True)
class Completion:
    content: str
    usage: Usage


def _rejects_response_format(error: openai.BadRequestError) -> bool:
    message = str(error).lower()
    return "response_format" in message or "json_schema" in message


class ChatClient:
    """One chat model behind an OpenAI-compatible endpoint; thread-safe, so one serves every job thread."""

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 temperature: float = 0.9, timeout: float = 60.0, max_retries: int = 4,
                 input_price: float = 0.0, output_price: float = 0.0, cache_dir: str | Path | None = None) -> None:
        self.model = model
        self.temperature = temperature
        self.input_price = input_price
        self.output_price = output_price
        # A local endpoint may need no key, but the SDK insists on one.
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "no-key", timeout=timeout,
                                     max_retries=max_retries)
        self._cache = diskcache.Cache(str(cache_dir)) if cache_dir is not None else None
        self._structured_output = True
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatClient:
        if not (settings.openai_base_url or settings.openai_api_key):
            raise LLMNotConfigured("no LLM is configured: set OPENAI_BASE_URL (an OpenAI-compatible endpoint) "
                                   "and/or OPENAI_API_KEY; generation jobs wait in the queue until then")
        return cls(settings.llm_model, settings.openai_base_url, settings.openai_api_key, settings.llm_temperature,
                   settings.llm_timeout, settings.llm_max_retries, settings.llm_input_price,
                   settings.llm_output_price, settings.cache_dir / "llm-responses")

    def _cache_key(self, messages: list[dict[str, str]]) -> str:
        payload = json.dumps({"format": CACHE_FORMAT, "model": self.model, "temperature": self.temperature,
                              "messages": messages}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_price + completion_tokens * self.output_price) / 1_000_000

    def _request(self, messages: list[dict[str, str]], max_tokens: int, response_format: Any) -> Any:
        arguments: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature,
                                     "max_tokens": max_tokens}
        if self._structured_output:
            try:
                return self._client.chat.completions.create(**arguments, response_format=response_format)
            except openai.BadRequestError as error:
                if not _rejects_response_format(error):
                    raise
                log.warning("the endpoint rejects response_format (%s); asking for JSON in the prompt only", error)
                with self._lock:
                    self._structured_output = False
        return self._client.chat.completions.create(**arguments)

    def complete(self, messages: list[dict[str, str]], max_tokens: int,
                 response_format: Any = VARIATIONS_SCHEMA) -> Completion:
        """The assistant's answer to ``messages`` (at most ``max_tokens`` tokens), from the cache when an answer
        to this exact request was accepted before (``remember``). ``response_format``: the JSON schema asked of an
        endpoint that supports structured output (variations by default)."""
        key = self._cache_key(messages)
        if self._cache is not None:
            cached = self._cache.get(key)
            if isinstance(cached, str):
                return Completion(cached, Usage(requests=1, cached=1))
        response = self._request(messages, max_tokens, response_format)
        choice = response.choices[0] if response.choices else None
        content = (choice.message.content or "") if choice is not None else ""
        if choice is not None and choice.finish_reason == "length":
            log.warning("the answer reached max_tokens=%d and was cut off; its complete variations are kept",
                        max_tokens)
        prompt_tokens = response.usage.prompt_tokens if response.usage else 0
        completion_tokens = response.usage.completion_tokens if response.usage else 0
        usage = Usage(requests=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                      cost_usd=self.cost(prompt_tokens, completion_tokens))
        return Completion(content, usage)

    def remember(self, messages: list[dict[str, str]], content: str) -> None:
        """Store ``content`` as the answer to ``messages``: what the caller accepted, never a raw answer."""
        if self._cache is not None:
            self._cache.set(self._cache_key(messages), content, expire=CACHE_TTL_SECONDS)
