"""Chat backends: the echo backend, and the OpenAI-compatible one against a real HTTP server on
loopback that speaks the streaming `/v1/chat/completions` protocol (server-sent events)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from sessions_app.chat.backends import BackendError, ChatBackend, ChatTurn, StreamEnd, get_backend
from sessions_app.chat.backends import openai as openai_backend
from sessions_app.chat.backends.echo import EchoBackend, echo_reply
from sessions_app.chat.backends.openai import OpenAIBackend


class FakeModelServer(ThreadingHTTPServer):
    """Answers like vLLM/Ollama: one `data:` chunk per piece, optional usage, then [DONE]."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.mode = "ok"  # "ok" | "error" | "garbage" | "slow"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: FakeModelServer

    def log_message(self, *args: Any) -> None:  # keep the test output quiet
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(
            {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
        )
        if self.server.mode == "error":
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "out of memory on 10.0.0.7"}}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if self.server.mode == "garbage":
            self.wfile.write(b"data: {not json\n\n")
            return
        last = body["messages"][-1]["content"]
        pieces = ["You", " asked", ": ", last]
        for piece in pieces:
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            if self.server.mode == "slow":
                threading.Event().wait(0.3)
        usage = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 7}}
        self.wfile.write(f": keep-alive comment\n\ndata: {json.dumps(usage)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    server = FakeModelServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def collect(backend: ChatBackend, turns: list[ChatTurn]) -> tuple[list[str], StreamEnd]:
    end = StreamEnd()
    pieces = [piece async for piece in backend.stream(turns, end)]
    return pieces, end


async def test_openai_streams_the_answer_with_history_model_and_key(
    model_server: FakeModelServer,
) -> None:
    backend = OpenAIBackend(base_url=model_server.base_url, model="qwen-7b", api_key="sk-test")
    turns = [
        ChatTurn("user", "first question"),
        ChatTurn("assistant", "first answer"),
        ChatTurn("user", "second question"),
    ]
    pieces, end = await collect(backend, turns)
    assert "".join(pieces) == "You asked: second question"
    assert end.tokens == 7  # the server's usage report wins over the chunk count
    (request,) = model_server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-test"
    assert request["body"]["model"] == "qwen-7b" and request["body"]["stream"] is True
    assert request["body"]["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]


async def test_openai_sends_no_key_when_none_is_configured(model_server: FakeModelServer) -> None:
    backend = OpenAIBackend(base_url=model_server.base_url + "/", model="m")
    await collect(backend, [ChatTurn("user", "hi")])
    assert model_server.requests[0]["auth"] is None
    assert model_server.requests[0]["path"] == "/v1/chat/completions"


async def test_openai_http_error_is_a_backend_error_without_internals(
    model_server: FakeModelServer,
) -> None:
    model_server.mode = "error"
    backend = OpenAIBackend(base_url=model_server.base_url, model="m")
    with pytest.raises(BackendError) as failed:
        await collect(backend, [ChatTurn("user", "hi")])
    assert "500" in str(failed.value) and "10.0.0.7" not in str(failed.value)


async def test_openai_malformed_stream_is_a_backend_error(model_server: FakeModelServer) -> None:
    model_server.mode = "garbage"
    backend = OpenAIBackend(base_url=model_server.base_url, model="m")
    with pytest.raises(BackendError):
        await collect(backend, [ChatTurn("user", "hi")])


async def test_openai_unreachable_and_too_slow_are_backend_errors(
    model_server: FakeModelServer,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nobody = OpenAIBackend(base_url=f"http://127.0.0.1:{port}/v1", model="m")
    with pytest.raises(BackendError, match="could not be reached"):
        await collect(nobody, [ChatTurn("user", "hi")])
    model_server.mode = "slow"
    impatient = OpenAIBackend(base_url=model_server.base_url, model="m", read_timeout=0.1)
    with pytest.raises(BackendError, match="in time"):
        await collect(impatient, [ChatTurn("user", "hi")])


async def test_openai_stream_can_be_cancelled_mid_answer(model_server: FakeModelServer) -> None:
    model_server.mode = "slow"
    backend = OpenAIBackend(base_url=model_server.base_url, model="m")
    got: list[str] = []

    async def consume() -> None:
        async for piece in backend.stream([ChatTurn("user", "hi")], StreamEnd()):
            got.append(piece)

    task = asyncio.create_task(consume())
    while not got:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0 < len(got) < 4


async def test_openai_answers_share_one_http_client_per_event_loop(
    model_server: FakeModelServer, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building an httpx client costs ~25 ms (CA bundle read on the loop): the answering loop
    builds a backend per answer, and every answer on one loop must reuse one client."""
    built: list[httpx.AsyncClient] = []

    class CountingClient(httpx.AsyncClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(httpx, "AsyncClient", CountingClient)
    settings.CHATGATE = {
        **getattr(settings, "CHATGATE", {}),
        "CHAT_BACKEND": "openai",
        "OPENAI_BASE_URL": model_server.base_url,
        "OPENAI_MODEL": "m",
    }
    for question in ("one", "two", "three"):
        backend = get_backend()  # as answering.py does: a backend per answer
        pieces, _ = await collect(backend, [ChatTurn("user", question)])
        assert "".join(pieces) == f"You asked: {question}"
        await backend.aclose()
    assert len(built) == 1
    assert openai_backend.shared_client() is built[0]

    # Another event loop (a thread, a test) gets its own client: connections are loop-bound.
    other = await asyncio.to_thread(lambda: asyncio.run(_client_of_a_new_loop()))
    assert other is not built[0] and len(built) == 2


async def _client_of_a_new_loop() -> httpx.AsyncClient:
    return openai_backend.shared_client()


class KeepAliveModelServer(ThreadingHTTPServer):
    """HTTP/1.1 with chunked bodies, as vLLM and Ollama serve: the body's end comes a moment
    after `data: [DONE]` (`tail_seconds`), or never (`tail_seconds` None)."""

    daemon_threads = True

    def __init__(self, tail_seconds: float | None) -> None:
        super().__init__(("127.0.0.1", 0), _ChunkedHandler)
        self.tail_seconds = tail_seconds
        self.connections = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)


class _ChunkedHandler(BaseHTTPRequestHandler):
    server: KeepAliveModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = {"choices": [{"index": 0, "delta": {"content": "hello"}}]}
        for data in (f"data: {json.dumps(chunk)}\n\n".encode(), b"data: [DONE]\n\n"):
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        if self.server.tail_seconds is None:
            threading.Event().wait(5)  # a server that holds the body open after [DONE]
            self.close_connection = True
            return
        threading.Event().wait(self.server.tail_seconds)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


@pytest.fixture
def keepalive_server(request: pytest.FixtureRequest) -> Iterator[KeepAliveModelServer]:
    server = KeepAliveModelServer(request.param)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("keepalive_server", [0.05], indirect=True)
async def test_openai_answers_reuse_one_connection_to_the_model_server(
    keepalive_server: KeepAliveModelServer,
) -> None:
    """The body's end follows [DONE] after a moment: an answer reads it, so the connection
    goes back to the pool (closed at [DONE], every answer opened a new one)."""
    backend = OpenAIBackend(
        base_url=f"http://127.0.0.1:{keepalive_server.server_address[1]}/v1", model="m"
    )
    for _ in range(3):
        pieces, _end = await collect(backend, [ChatTurn("user", "hi")])
        assert pieces == ["hello"]
    assert keepalive_server.connections == 1


@pytest.mark.parametrize("keepalive_server", [None], indirect=True)
async def test_openai_an_answer_ends_soon_when_the_body_stays_open_after_done(
    keepalive_server: KeepAliveModelServer,
) -> None:
    backend = OpenAIBackend(
        base_url=f"http://127.0.0.1:{keepalive_server.server_address[1]}/v1", model="m"
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    pieces, _end = await collect(backend, [ChatTurn("user", "hi")])
    assert pieces == ["hello"]
    assert loop.time() - started < openai_backend.DRAIN_SECONDS + 1.0


async def test_echo_is_deterministic_and_counts_tokens() -> None:
    pieces, end = await collect(EchoBackend(token_delay=0), [ChatTurn("user", "a  b c")])
    assert pieces == ["Echo:", " a", "  b", " c"] == echo_reply("a  b c")
    # Whitespace as written: Markdown's line structure survives the echo.
    assert "".join(echo_reply("  # Title\n\n| a | b |\n|---|---|\n```py\nx = 1\n```\n")) == (
        "Echo: # Title\n\n| a | b |\n|---|---|\n```py\nx = 1\n```"
    )
    assert end.tokens == 4
    empty, _ = await collect(EchoBackend(token_delay=0), [ChatTurn("user", "   ")])
    assert "".join(empty) == "Echo: (empty)"


async def test_echo_delay_paces_the_tokens() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await collect(EchoBackend(token_delay=0.05), [ChatTurn("user", "one two three")])
    assert loop.time() - started >= 4 * 0.05 * 0.9


def test_get_backend_follows_settings(settings: Any) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "CHAT_BACKEND": "echo"}
    assert isinstance(get_backend(), EchoBackend)
    settings.CHATGATE = {
        **settings.CHATGATE,
        "CHAT_BACKEND": "openai",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "OPENAI_MODEL": "llama",
    }
    backend = get_backend()
    assert isinstance(backend, OpenAIBackend)
    assert backend.url == "http://127.0.0.1:9/v1/chat/completions" and backend.model == "llama"
    with pytest.raises(ValueError, match="Unknown CHAT_BACKEND"):
        get_backend("nope")


def test_the_base_class_names_what_subclasses_must_implement() -> None:
    with pytest.raises(NotImplementedError, match="stream"):
        ChatBackend().stream([], StreamEnd())
