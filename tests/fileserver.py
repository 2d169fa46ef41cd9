"""A CRM file host on 127.0.0.1: serves recordings and misbehaves on request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Hit:
    path: str
    at: float


@dataclass
class FileServer:
    """Routes are plain handlers keyed by path; every request is recorded."""

    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    bytes_sent: dict[str, int] = field(default_factory=dict)
    base_url: str = ""

    def hits_of(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(Hit(request.path, time.monotonic()))
        route = self.routes.get(request.path)
        if route is None:
            raise web.HTTPNotFound()
        return await route(request)

    def file(self, path: str, source: Path, content_type: str = "audio/mpeg") -> str:
        return self.body(path, source.read_bytes(), content_type)

    def body(self, path: str, data: bytes, content_type: str = "audio/mpeg") -> str:
        async def serve(_request: web.Request) -> web.StreamResponse:
            return web.Response(body=data, content_type=content_type)

        self.routes[path] = serve
        return self.base_url + path

    def sequence(self, path: str, answers: list[Route]) -> str:
        """Answer the n-th request with the n-th handler (the last one repeats)."""
        calls = 0

        async def serve(request: web.Request) -> web.StreamResponse:
            nonlocal calls
            calls += 1
            return await answers[min(calls, len(answers)) - 1](request)

        self.routes[path] = serve
        return self.base_url + path

    def stream(
        self,
        path: str,
        *,
        total_bytes: int = 0,
        data: bytes | None = None,
        chunk_bytes: int = 64 * 1024,
        pause_s: float = 0.0,
    ) -> str:
        """Send `data` (or `total_bytes` of zeros) in chunks, pausing between them.

        Counts what was written, so a test can see where a reader stopped.
        """
        total = len(data) if data is not None else total_bytes

        async def serve(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
            await response.prepare(request)
            self.bytes_sent[path] = 0
            while (sent := self.bytes_sent[path]) < total:
                size = min(chunk_bytes, total - sent)
                await response.write(data[sent : sent + size] if data else b"\0" * size)
                self.bytes_sent[path] += size
                if pause_s:
                    await asyncio.sleep(pause_s)
            await response.write_eof()
            return response

        self.routes[path] = serve
        return self.base_url + path


def status(code: int, headers: dict[str, str] | None = None) -> Route:
    async def answer(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, headers=headers or {}, text="error")

    return answer


def redirect(location: str, code: int = 302) -> Route:
    async def answer(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, headers={"Location": location})

    return answer
