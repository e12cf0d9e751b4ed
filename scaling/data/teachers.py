"""Teachers write an expert's thinking about a document (TPT, arXiv 2509.20186).

One interface, the `Teacher` protocol: `teacher.think(text, document)` returns the thinking and
the tokens generated; `teacher.teacher_id` and `teacher.config_hash` (prompt and sampling) key
the cache; `teacher.flops_per_token` = 2 x teacher parameters, so augmentation can be charged its
cost. A teacher is a frozen dataclass whose fields are its settings, bound in gin as
`AugmentConfig.teacher = @OpenAICompatibleTeacher()` or `@ProgrammaticTeacher()` with its settings
on it (`OpenAICompatibleTeacher.model = ...`); the strings 'openai' and 'programmatic' name the same
classes (`teacher_named`). Its `check()` names a bad setting before any request.

- ProgrammaticTeacher: for synthetic documents, writes the step-by-step derivation of each hard
  value from the document's solution; length grows with difficulty, none without a hard span.
- OpenAICompatibleTeacher: any OpenAI-compatible server (vLLM, SGLang, llama.cpp), over
  /v1/completions or /v1/chat/completions, with TPT's prompt and sampling by default, retries
  with exponential backoff, and the API key read from an environment variable at request time
  (never stored on the object, never logged, never written to a config).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import http.client
import json
import logging
import os
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import gin

from scaling.configuration import ConfigError
from scaling.data.corpus import Document
from scaling.data.formats import thinking_block

log = logging.getLogger(__name__)

TPT_PROMPT = (
    "Simulate an expert's in-depth thought process as they analyse the document below. Focus on "
    "its complex and informative parts and skip what is trivial. Work through each hard point "
    "step by step and explain it in plain words, as the Feynman technique asks.\n\n"
    "<document>\n{document}\n</document>"
)


@dataclasses.dataclass(frozen=True)
class Thinking:
    text: str
    tokens_generated: int


def require_values(config) -> None:
    """gin hands a bare sentinel to dataclass fields left at %gin.REQUIRED: name them."""
    for field in dataclasses.fields(config):
        if type(getattr(config, field.name)) is object:
            name = f"{type(config).__name__}.{field.name}"
            raise ConfigError(f"{name}: missing required value (%gin.REQUIRED); give it with --gin.{name}=VALUE")


def _short_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


class TeacherError(RuntimeError):
    """A request that cannot succeed (bad request, or retries exhausted)."""


class Teacher(Protocol):
    """What `scaling augment` asks of a teacher."""

    teacher_id: str  # with config_hash, part of every cache key
    config_hash: str  # the settings that change what is written (prompt, sampling)
    flops_per_token: float  # charged per generated token
    concurrency: int  # requests in flight at once
    needs_synthetic_documents: bool  # True: think() needs the synthetic Document (source 'synthetic')

    def think(self, text: str, document: Document | None = None) -> Thinking:
        """The thinking about `text`; raises TeacherError when it cannot be had."""


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ProgrammaticTeacher:
    """Writes each hard span's derivation: its setup, one line per step, the stated result.

    emulated_params: parameters charged per generated token (2 x params FLOPs). The rule-based
    teacher spends no model FLOPs, so 0 by default; set it to price a hypothetical LLM teacher."""

    VERSION = 1
    needs_synthetic_documents = True
    concurrency = 1

    emulated_params: float = 0.0

    def check(self) -> None:
        if isinstance(self.emulated_params, bool) or not isinstance(self.emulated_params, (int, float)) \
                or self.emulated_params < 0:
            raise ConfigError(f"ProgrammaticTeacher.emulated_params: must be a number >= 0, "
                              f"got {self.emulated_params!r}")

    @property
    def teacher_id(self) -> str:
        return f"programmatic-v{self.VERSION}"

    @property
    def config_hash(self) -> str:
        return _short_hash({"teacher": self.teacher_id})

    @property
    def flops_per_token(self) -> float:
        return 2.0 * self.emulated_params

    @staticmethod
    def span_thinking(document: Document) -> list[str]:
        """The before_hard thinking: the bare chain of steps for each span."""
        return [" ".join(span.steps) for span in document.hard_spans]

    def think(self, text: str, document: Document | None = None) -> Thinking:
        if document is None:
            raise TeacherError("the programmatic teacher needs a synthetic document (with its solution)")
        parts = [" ".join((span.setup, *span.steps, span.conclusion)) for span in document.hard_spans]
        thinking = " ".join(parts)
        from scaling.data import vocabulary  # here: the vocabulary brings in seqio/TensorFlow
        tokens = len(vocabulary.encode(thinking_block(thinking))) if thinking else 0
        return Thinking(thinking, tokens)


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


def truncate_words(text: str, max_tokens: int) -> str:
    """Keep about `max_tokens` tokens of text (0.75 words per token, the usual BPE ratio)."""
    words = text.split(" ")
    keep = max(1, int(max_tokens * 0.75))
    return text if len(words) <= keep else " ".join(words[:keep])


def _between_think_tags(text: str) -> str:
    if "<think>" in text:
        text = text.split("<think>", 1)[1]
    return text.split("</think>", 1)[0].strip()


@gin.configurable
@dataclasses.dataclass(frozen=True)
class OpenAICompatibleTeacher:
    """Any OpenAI-compatible server. `params` is the teacher's size (for its FLOPs); `api_key_env`
    names the environment variable holding the key (unset: no auth header). The settings are
    recorded in the cache's gin file; the sampling ones (`config_hash`) key the cache."""

    needs_synthetic_documents = False

    base_url: str = "http://localhost:8000"
    model: str = ""
    params: float = 0.0
    endpoint: str = "chat"              # "chat" (/v1/chat/completions) or "completions"
    api_key_env: str = "OPENAI_API_KEY"
    prompt: str = TPT_PROMPT
    temperature: float = 0.6
    top_p: float = 0.9
    max_thinking_tokens: int = 8192
    max_document_tokens: int = 2048     # approximated as 0.75 words per token
    concurrency: int = 16
    timeout_s: float = 300.0           # a whole request (connect, send, every byte of the reply)
    max_retries: int = 8
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0         # also the longest wait a server's Retry-After gets

    def check(self) -> None:
        require_values(self)
        if not self.model:
            raise ConfigError("OpenAICompatibleTeacher.model: give the served model name")
        if self.params <= 0:
            raise ConfigError("OpenAICompatibleTeacher.params: give the teacher's parameter count (for its FLOPs)")
        if self.endpoint not in ("chat", "completions"):
            raise ConfigError(f"OpenAICompatibleTeacher.endpoint: 'chat' or 'completions', got {self.endpoint!r}")
        if "{document}" not in self.prompt:
            raise ConfigError("OpenAICompatibleTeacher.prompt: must contain {document}")
        url = urllib.parse.urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"OpenAICompatibleTeacher.base_url: give the server as http://HOST:PORT or "
                              f"https://HOST, got {self.base_url!r}")
        for name, low in (("max_retries", 0), ("concurrency", 1), ("max_thinking_tokens", 1),
                          ("max_document_tokens", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"OpenAICompatibleTeacher.{name}: must be an integer >= {low}, got {value!r}")
        for name in ("timeout_s", "backoff_s", "backoff_max_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ConfigError(f"OpenAICompatibleTeacher.{name}: must be a number of seconds above zero, "
                                  f"got {value!r}")

    @property
    def teacher_id(self) -> str:
        return f"openai:{self.model}"

    @property
    def config_hash(self) -> str:
        return _short_hash({k: getattr(self, k) for k in ("endpoint", "prompt", "temperature", "top_p",
                                                           "max_thinking_tokens", "max_document_tokens")})

    @property
    def flops_per_token(self) -> float:
        return 2.0 * self.params

    def key_warning(self) -> str | None:
        """A warning when `api_key_env` names a variable that is not set (requests then go without a
        key, which a server that wants one refuses only at the first request); None otherwise."""
        if self.api_key_env and not os.environ.get(self.api_key_env):
            return (f"OpenAICompatibleTeacher.api_key_env = {self.api_key_env!r} names an environment variable that "
                    f"is not set: requests go without an API key (export {self.api_key_env}=... if the server "
                    f"wants one, or bind api_key_env = '' for a server without keys)")
        return None

    def check_answers(self, timeout_s: float = 10.0) -> None:
        """Fail in seconds, naming the URL, when nothing answers at base_url, rather than after
        every document's retries. Any HTTP reply (even 401 or 404) means the server is up."""
        url = self.base_url.rstrip("/") + "/v1/models"
        try:
            with urllib.request.urlopen(url, timeout=min(timeout_s, self.timeout_s)):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise TeacherError(f"the teacher server at {self.base_url} does not answer (GET {url}: {reason}); "
                               "start it, or bind OpenAICompatibleTeacher.base_url to where it listens") from None

    def _request_body(self, text: str) -> tuple[str, dict]:
        c = self
        prompt = c.prompt.format(document=truncate_words(text, c.max_document_tokens))
        common = {"model": c.model, "temperature": c.temperature, "top_p": c.top_p,
                  "max_tokens": c.max_thinking_tokens, "stop": ["</think>"]}
        if c.endpoint == "chat":
            return "/v1/chat/completions", {**common, "messages": [{"role": "user", "content": prompt}]}
        return "/v1/completions", {**common, "prompt": prompt + "\n\n<think>\n"}

    def _post(self, path: str, body: dict) -> dict:
        """One request, bounded as a whole by timeout_s (a server dripping a byte a second gives
        every socket read something, so a per-read timeout would never end it)."""
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env, "")
        if key:
            headers["Authorization"] = "Bearer " + key
        url = urllib.parse.urlsplit(self.base_url.rstrip("/") + path)
        connection_type = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        deadline = time.monotonic() + self.timeout_s
        connection = connection_type(url.hostname, url.port, timeout=self.timeout_s)
        try:
            connection.request("POST", url.path, body=json.dumps(body).encode(), headers=headers)
            response = connection.getresponse()
            chunks = []
            while chunk := self._read_before(connection, response, deadline):
                chunks.append(chunk)
            raw = b"".join(chunks)
        except (socket.timeout, TimeoutError) as e:
            raise _Retryable(f"timeout: no complete reply within timeout_s = {self.timeout_s:g} s ({e})") from None
        except (http.client.HTTPException, ConnectionError, OSError) as e:
            raise _Retryable(f"connection: {type(e).__name__}: {e}") from None
        finally:
            connection.close()
        if response.status == 429 or response.status >= 500:
            after = response.getheader("Retry-After")
            raise _Retryable(f"HTTP {response.status}", float(after) if after and after.isdigit() else None)
        if response.status >= 400:
            raise TeacherError(f"{path}: HTTP {response.status}: {raw[:300].decode(errors='replace')}")
        try:
            return json.loads(raw)
        except ValueError:
            raise _Retryable(f"malformed JSON body ({len(raw)} bytes)") from None

    @staticmethod
    def _read_before(connection, response, deadline: float) -> bytes:
        """The next bytes of the reply, each socket read given only the time left."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the reply was still arriving")
        if connection.sock is not None:
            connection.sock.settimeout(left)
        return response.read1(65536)

    def _parse(self, reply: dict) -> Thinking:
        """The reply's thinking and token count, each checked before anything is cached: a reply
        of another shape, an empty completion or a negative count is retried, never stored."""
        try:
            choice = reply["choices"][0]
            if self.endpoint == "chat":
                message = choice["message"]
                if not isinstance(message, dict):
                    raise TypeError(f"choices[0].message is a {type(message).__name__}, not an object")
                text = message.get("content") or message.get("reasoning_content") or ""
            else:
                text = choice["text"]
            if not isinstance(text, str):
                raise TypeError("the completion text is not a string")
            usage = reply.get("usage") or {}
            if not isinstance(usage, dict):
                raise TypeError(f"usage is a {type(usage).__name__}, not an object")
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise _Retryable(f"malformed reply: {type(e).__name__}: {e}") from None
        thinking = _between_think_tags(text)
        if not thinking:
            raise _Retryable("empty completion (no thinking text)")
        tokens = usage.get("completion_tokens")
        if isinstance(tokens, bool) or not isinstance(tokens, int):
            tokens = round(len(thinking.split()) / 0.75)
        elif tokens <= 0:
            raise _Retryable(f"malformed reply: usage.completion_tokens = {tokens} for a non-empty completion")
        return Thinking(thinking, tokens)

    def think(self, text: str, document: Document | None = None) -> Thinking:
        path, body = self._request_body(text)
        c = self
        for attempt in range(c.max_retries + 1):
            try:
                return self._parse(self._post(path, body))
            except _Retryable as e:
                if attempt == c.max_retries:
                    raise TeacherError(f"{path}: gave up after {attempt + 1} attempts; last: {e}") from None
                delay = min(c.backoff_max_s, e.retry_after) if e.retry_after is not None else \
                    min(c.backoff_max_s, c.backoff_s * 2 ** attempt) * (0.5 + random.random() / 2)
                log.warning("teacher request failed (%s); retry %d in %.2fs", e, attempt + 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")


TEACHERS = {"programmatic": ProgrammaticTeacher, "openai": OpenAICompatibleTeacher}


def teacher_named(teacher: Teacher | str) -> Teacher:
    """The teacher object for `AugmentConfig.teacher`, checked: an object as it is, a string by its
    name (constructed here, with its settings from the parsed gin config)."""
    teacher = TEACHERS[teacher]() if isinstance(teacher, str) else teacher
    teacher.check()
    return teacher


def concurrent_map(fn: Callable, items: Iterable, workers: int) -> Iterator[tuple[object, object]]:
    """(item, fn(item)) in completion order with at most `workers` calls in flight."""
    items = iter(items)
    if workers <= 1:
        for item in items:
            yield item, fn(item)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending = {}
        for item in items:
            pending[pool.submit(fn, item)] = item
            if len(pending) >= 2 * workers:
                done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
        for future in concurrent.futures.as_completed(list(pending)):
            yield pending.pop(future), future.result()
