"""Fakes of third parties outside the system, as real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
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
