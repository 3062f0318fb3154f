"""A fake Groq API, and a fake OpenAI-compatible server: a real HTTP server on 127.0.0.1 speaking the
chat-completions wire format.

Groq's paths are under /openai/v1 and stream usage in `x_groq.usage`; the OpenAI paths (/v1, used by
`FakeOpenAIServer`, whose base URL ends in /v1 as Ollama's and vLLM's do) stream it the OpenAI way, in a
last chunk with no choices, when the request asks with `stream_options.include_usage`.

The request decides what goes wrong, as in bolt-python's fake Slack: put a magic word in the last user
message and the fake answers with that fault. The default reply is built from the prompt's numbered
sources, so tests can predict the answer and its citations.

Magic words (anywhere in the last user message):
    FAULT_429       429 with Retry-After, every time (the SDK retries, then gives up)
    FAULT_500       500, every time
    FAULT_TIMEOUT   hang for `hang_seconds` (30 s; ends at stop()), then drop the connection
    FAULT_BROKEN    stream a few tokens, then drop the connection without [DONE]
    FAULT_NOFINISH  stream every token and [DONE] but never a finish_reason
    FAULT_FLAKY     500 the first time this exact prompt is seen, the normal reply after that
    FAULT_CITE99    the normal reply, also citing a source that does not exist: "[1][99]"
    FAULT_RAGGED    the normal reply on a ragged wire: \\r\\n line endings, `: keep-alive` comments and
                    `event:` lines, cut into 7-byte HTTP chunks (lines and UTF-8 characters straddle them)
A key of "gsk-invalid", or none, gets a 401.

    with FakeGroqServer() as fake:
        settings = RagSettings(groq_api_key="gsk-test", groq_base_url=fake.base_url)
        ...
        assert fake.requests[-1].body["stream"] is True
"""

from __future__ import annotations

import html
import json
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

CHAT_PATH = "/openai/v1/chat/completions"
MODELS_PATH = "/openai/v1/models"
OPENAI_CHAT_PATH = "/v1/chat/completions"
OPENAI_MODELS_PATH = "/v1/models"
DEFAULT_MODEL = "llama-3.3-70b-versatile"
INVALID_KEY = "gsk-invalid"

NO_SOURCES_REPLY = "I could not find this in the documents."
MAGIC_WORDS = (
    "FAULT_429", "FAULT_500", "FAULT_TIMEOUT", "FAULT_BROKEN", "FAULT_NOFINISH", "FAULT_FLAKY", "FAULT_CITE99",
    "FAULT_RAGGED",
)
FAIL_RATE_FAULTS = ("429", "500", "timeout", "broken")
BROKEN_AFTER_TOKENS = 3  # a broken stream sends this many tokens, then the socket is dropped

MODELS_RESPONSE: dict[str, Any] = {
    "object": "list",
    "data": [
        {"id": DEFAULT_MODEL, "object": "model", "created": 1733447754, "owned_by": "Meta", "active": True,
         "context_window": 131072},
        {"id": "llama-3.1-8b-instant", "object": "model", "created": 1693721698, "owned_by": "Meta",
         "active": True, "context_window": 131072},
    ],
}
ERROR_401: dict[str, Any] = {
    "error": {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}
}
ERROR_429: dict[str, Any] = {
    "error": {
        "message": f"Rate limit reached for model `{DEFAULT_MODEL}` on tokens per minute (TPM). Please try again.",
        "type": "tokens",
        "code": "rate_limit_exceeded",
    }
}
ERROR_500: dict[str, Any] = {"error": {"message": "Internal Server Error", "type": "internal_server_error"}}
ERROR_404: dict[str, Any] = {"error": {"message": "Unknown request URL", "type": "invalid_request_error"}}
ERROR_400: dict[str, Any] = {"error": {"message": "Request body is not valid JSON", "type": "invalid_request_error"}}

# The lead's prompt format, see ragcore.generation.build_messages.
_SOURCE_RE = re.compile(r'<source n="(\d+)"[^>]*>(.*?)</source>', re.S)
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+")
_TOKEN_RE = re.compile(r"\s*\S+")

Reply = str | Callable[[str], str] | None


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received: headers have lower-case names, body is the parsed JSON (or None)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def prompt(self) -> str:
        """The last user message of a chat request."""
        return last_user_message(self.body)

    def source_location(self, n: int) -> str:
        """The location attribute of the prompt's source n (what the bot lists it as)."""
        match = re.search(rf'<source n="{n}"[^>]*location="([^"]*)"', self.prompt)
        return html.unescape(match.group(1)) if match else ""


def last_user_message(body: Any) -> str:
    messages = body.get("messages", []) if isinstance(body, dict) else []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content", "")
            if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    return ""


def first_sentence(text: str, max_words: int = 40) -> str:
    """The first sentence of a source, whitespace collapsed, without its closing punctuation."""
    flat = " ".join(html.unescape(text).split())
    sentence = _SENTENCE_END_RE.split(flat, maxsplit=1)[0]
    return " ".join(sentence.split()[:max_words]).rstrip(".!?")


def grounded_reply(prompt: str, *, extra_citation: str = "") -> str:
    """The default answer: the first sentence of sources 1 and 2, each cited."""
    sources = _SOURCE_RE.findall(prompt)
    if not sources:
        return NO_SOURCES_REPLY
    (n1, text1), rest = sources[0], sources[1:]
    reply = f"According to the documents, {first_sentence(text1)} [{n1}]{extra_citation}."
    if rest:
        n2, text2 = rest[0]
        reply += f" {first_sentence(text2)} [{n2}]."
    return reply


def split_tokens(text: str) -> list[str]:
    """Words with their leading whitespace, the way LLM tokens usually arrive."""
    return _TOKEN_RE.findall(text)


class _DropConnection(Exception):
    """Raised inside the handler to hang up without a (complete) response."""


class FakeGroqHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as the SDK expects
    disable_nagle_algorithm = True  # one small write per token must not wait for a delayed ACK
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.fake._track(self.connection, add=False)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_POST(self) -> None:
        self._guarded(self._post)

    def _guarded(self, handle: Callable[[], None]) -> None:
        try:
            handle()
        except (_DropConnection, OSError):  # our own hang-up, or the client went away mid-reply
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _get(self) -> None:
        fake = self.server.fake
        fake._record("GET", self.path, dict(self.headers.items()), None)
        if not self._authorized():
            return
        if self.path.rstrip("/") in (MODELS_PATH, OPENAI_MODELS_PATH):
            self._send_json(200, MODELS_RESPONSE)
        else:
            self._send_json(404, ERROR_404)

    def _post(self) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        fake._record("POST", self.path, dict(self.headers.items()), body)
        if not self._authorized():
            return
        if self.path not in (CHAT_PATH, OPENAI_CHAT_PATH):
            self._send_json(404, ERROR_404)
            return
        if not isinstance(body, dict):
            self._send_json(400, ERROR_400)
            return
        prompt = last_user_message(body)
        fault = fake._choose_fault(prompt)
        streaming = bool(body.get("stream"))
        if fault == "429":
            self._send_json(429, ERROR_429, retry=True)
        elif fault == "500":
            self._send_json(500, ERROR_500, retry=True)
        elif fault == "timeout":
            fake._stopping.wait(fake.hang_seconds)  # longer than any client timeout; ends early on stop()
            raise _DropConnection
        elif fault == "broken" and not streaming:
            raise _DropConnection
        else:
            self._reply(body, prompt, streaming, fault)

    def _authorized(self) -> bool:
        scheme, _, key = self.headers.get("Authorization", "").partition(" ")
        if not self.server.fake.require_key and not self.headers.get("Authorization"):
            return True  # a local server (Ollama, llama.cpp) that takes no key
        if scheme != "Bearer" or not key.strip() or key.strip() == INVALID_KEY:
            self._send_json(401, ERROR_401)
            return False
        return True

    def _send_json(self, status: int, payload: Any, *, retry: bool = False) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry:
            # Real Groq sends retry-after on 429. The SDK ignores a 0 and would back off 0.5–8 s, but it
            # reads retry-after-ms first, so a short one keeps retries fast in tests.
            self.send_header("Retry-After", "0")
            self.send_header("retry-after-ms", str(self.server.fake.retry_after_ms))
        self.end_headers()
        self.wfile.write(data)

    def _reply(self, body: dict[str, Any], prompt: str, streaming: bool, fault: str) -> None:
        fake = self.server.fake
        tokens = split_tokens(fake._reply_text(prompt))
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        finish_reason: str | None = "stop"
        if isinstance(limit, int) and 0 < limit < len(tokens):
            tokens, finish_reason = tokens[:limit], "length"
        if fault == "nofinish":
            finish_reason = None
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        usage = {
            "queue_time": 0.001, "prompt_tokens": prompt_tokens, "prompt_time": 0.002,
            "completion_tokens": len(tokens), "completion_time": 0.01,
            "total_tokens": prompt_tokens + len(tokens), "total_time": 0.012,
        }
        completion_id = f"chatcmpl-{uuid.uuid4()}"
        model = str(body.get("model") or DEFAULT_MODEL)
        if streaming:
            openai_usage = self.path == OPENAI_CHAT_PATH and bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(completion_id, model, tokens, finish_reason, usage, broken=fault == "broken",
                         openai_usage=openai_usage, ragged=fault == "ragged")
            return
        if fake._stopping.wait(fake.first_token_delay + fake.token_delay * len(tokens)):
            raise _DropConnection
        self._send_json(200, {
            "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(tokens)},
                         "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage, "system_fingerprint": "fp_fake", "x_groq": {"id": f"req_{uuid.uuid4().hex}"},
        })

    def _stream(self, completion_id: str, model: str, tokens: list[str], finish_reason: str | None,
                usage: dict[str, Any], *, broken: bool, openai_usage: bool = False, ragged: bool = False) -> None:
        fake = self.server.fake
        held: list[bytes] = []  # a ragged stream is sent at the end, cut anywhere

        def event(data: bytes) -> None:
            if not ragged:
                self._write_chunk(data)
                return
            held.append(b": keep-alive\r\n\r\nevent: message\r\n" + data.replace(b"\n", b"\r\n"))
        request_id = f"req_{uuid.uuid4().hex}"
        created = int(time.time())

        groq = self.path == CHAT_PATH

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, x_groq: dict[str, Any] | None = None,
                  usage_chunk: dict[str, Any] | None = None) -> None:
            obj: dict[str, Any] = {
                "id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if x_groq and groq:
                obj["x_groq"] = x_groq
            if usage_chunk is not None:
                obj["usage"] = usage_chunk
            # ensure_ascii=False: multi-byte characters on the wire, as real servers send them.
            event(f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode())

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk({"role": "assistant", "content": ""}, x_groq={"id": request_id})
        delay = fake.first_token_delay
        for i, token in enumerate(tokens):
            if broken and i >= min(BROKEN_AFTER_TOKENS, len(tokens) - 1):
                raise _DropConnection  # no [DONE], no terminating chunk: the client sees a cut body
            if delay and fake._stopping.wait(delay):
                raise _DropConnection
            chunk({"content": token})
            delay = fake.token_delay
        if finish_reason:  # real Groq puts usage in x_groq on the last chunk, next to the finish_reason
            chunk({}, finish_reason, x_groq={"id": request_id, "usage": usage})
        if openai_usage:  # OpenAI: a chunk of its own after the finish_reason, with no choices
            chunk(None, usage_chunk={k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")})
        event(b"data: [DONE]\n\n")
        wire = b"".join(held)
        for start in range(0, len(wire), 7):
            self._write_chunk(wire[start : start + 7])
        self._write_chunk(b"")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512  # the listen backlog; benchmarks open a couple of hundred streams at once

    def __init__(self, fake: FakeGroqServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), FakeGroqHandler)


class FakeGroqServer:
    """A fake Groq on 127.0.0.1 (port 0) in a daemon thread; `start()` returns its base URL.

    :param token_delay: seconds between streamed tokens.
    :param first_token_delay: seconds before the first token.
    :param reply: None for the grounded default reply, a fixed string, or a function of the prompt.
    :param fail_rate: share of chat requests (0..1) that fail at random with a 429, 500, timeout or
        broken stream; the choice is seeded by `seed`.
    :param hang_seconds: how long a timeout fault hangs before dropping the connection.
    :param retry_after_ms: the retry delay the fake asks for on 429 and 500.
    :param require_key: False accepts requests without an Authorization header, as local servers do.
    """

    def __init__(self, *, token_delay: float = 0.0, first_token_delay: float = 0.0, reply: Reply = None,
                 fail_rate: float = 0.0, seed: int = 0, hang_seconds: float = 30.0,
                 retry_after_ms: int = 10, require_key: bool = True) -> None:
        self._defaults: dict[str, Any] = {
            "token_delay": token_delay, "first_token_delay": first_token_delay, "reply": reply,
            "fail_rate": fail_rate, "hang_seconds": hang_seconds, "retry_after_ms": retry_after_ms,
        }
        self.token_delay = token_delay
        self.first_token_delay = first_token_delay
        self.reply = reply
        self.fail_rate = fail_rate
        self.hang_seconds = hang_seconds
        self.retry_after_ms = retry_after_ms
        self.require_key = require_key
        self._seed = seed
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._seen_prompts: set[str] = set()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> str:
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-groq", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes hanging and slow handlers
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive handlers would otherwise block on their next read
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received since start or the last `reset()`."""
        with self._lock:
            return list(self._requests)

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == CHAT_PATH]

    def reset(self) -> None:
        """Forget recorded requests and seen prompts; restore the settings given to the constructor."""
        with self._lock:
            self._requests.clear()
            self._seen_prompts.clear()
            self._random.seed(self._seed)
        for name, value in self._defaults.items():
            setattr(self, name, value)

    def _record(self, method: str, path: str, headers: dict[str, str], body: Any) -> None:
        request = RecordedRequest(method, path, {k.lower(): v for k, v in headers.items()}, body)
        with self._lock:
            self._requests.append(request)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _choose_fault(self, prompt: str) -> str:
        """The fault this request asked for with a magic word, or one drawn at `fail_rate`, or ""."""
        for word, fault in (("FAULT_429", "429"), ("FAULT_500", "500"), ("FAULT_TIMEOUT", "timeout"),
                            ("FAULT_BROKEN", "broken"), ("FAULT_NOFINISH", "nofinish"), ("FAULT_RAGGED", "ragged")):
            if word in prompt:
                return fault
        with self._lock:
            if "FAULT_FLAKY" in prompt and prompt not in self._seen_prompts:
                self._seen_prompts.add(prompt)
                return "500"
            if self.fail_rate and self._random.random() < self.fail_rate:
                return self._random.choice(FAIL_RATE_FAULTS)
        return ""

    def _reply_text(self, prompt: str) -> str:
        if callable(self.reply):
            return self.reply(prompt)
        if self.reply is not None:
            return self.reply
        if "FAULT_CITE99" in prompt:
            return grounded_reply(prompt, extra_citation="[99]")
        return grounded_reply(prompt)


class FakeOpenAIServer(FakeGroqServer):
    """The same fake as an OpenAI-compatible server (Ollama, vLLM, llama.cpp): its base URL ends in /v1.

    Keys are optional by default, as on a local server.
    """

    def __init__(self, **options: Any) -> None:
        options.setdefault("require_key", False)
        super().__init__(**options)

    @property
    def base_url(self) -> str:
        return super().base_url + "/v1"

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == OPENAI_CHAT_PATH]


def assert_sends_what_create_sends(generator: Any, fake: FakeGroqServer | FakeOpenAIServer,
                                   messages: list[dict[str, str]]) -> None:
    """`generator`'s streamed request for `messages` equals the one its SDK's own `chat.completions.create`
    sends (path, body, auth and the SDK's headers): the generator posts through the SDK's low-level client."""
    list(generator.stream(messages))
    with generator._client.chat.completions.with_streaming_response.create(**generator._request(messages, True)) as r:
        r.read()
    ours, sdks = fake.chat_requests()[-2:]
    assert (ours.method, ours.path, ours.body) == (sdks.method, sdks.path, sdks.body)
    same = ("authorization", "content-type", "user-agent", "x-stainless-retry-count", "x-stainless-read-timeout")
    assert {h: ours.headers.get(h) for h in same} == {h: sdks.headers.get(h) for h in same}
