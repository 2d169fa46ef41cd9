"""Fakes of third parties outside the system, as real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakeLlm:
    """Answers chat completions from a script of replies; records every request."""

    replies: list[Callable[[], Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def complete(self, request: web.Request) -> web.Response:
        self.requests.append(await request.json())
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]()
        if asyncio.iscoroutine(reply):
            reply = await reply
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": "fake",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": reply},
                    }
                ],
            }
        )


def answer(content: Any) -> Callable[[], Any]:
    return lambda: content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def slow() -> Callable[[], Any]:
    async def wait() -> str:
        await asyncio.sleep(5)
        return "{}"

    return wait


@dataclass
class FakeTranscriptions:
    """An OpenAI-compatible `/v1/audio/transcriptions`: answers given words, keeps uploads."""

    words: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)

    async def transcribe(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        self.uploads.append(
            {
                "model": form["model"],
                "response_format": form["response_format"],
                "granularities": form.getall("timestamp_granularities[]", []),
                "audio": upload.file.read(),
            }
        )
        text = " ".join(word["word"] for word in self.words)
        return web.json_response(
            {
                "task": "transcribe",
                "language": "english",
                "duration": 1.0,
                "text": text,
                "words": self.words,
            }
        )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class FakeCrm:
    """The CRM's webhook endpoints: answers each path from a script of replies."""

    replies: dict[str, list[Callable[[], Any]]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def at(self, path: str) -> list[Received]:
        return [item for item in self.received if item.path == path]

    async def receive(self, request: web.Request) -> web.StreamResponse:
        self.received.append(
            Received(request.path, dict(request.headers), await request.read(), time.monotonic())
        )
        script = self.replies.get(request.path) or [reply(200)]
        answer = script[min(len(self.at(request.path)), len(script)) - 1]()
        if asyncio.iscoroutine(answer):
            answer = await answer
        assert isinstance(answer, web.StreamResponse)
        return answer


def reply(
    status: int, *, headers: dict[str, str] | None = None, delay_s: float = 0.0, body: str = "ok"
) -> Callable[[], Any]:
    async def answer() -> web.StreamResponse:
        if delay_s:
            await asyncio.sleep(delay_s)
        return web.Response(status=status, text=body, headers=headers or {})

    return answer
