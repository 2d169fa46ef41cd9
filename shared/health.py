"""What every worker service shares: its connections, health endpoints and signal handling."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from shared.amqp import Broker
from shared.connection import ensure_connection_settings
from shared.logging import configure_logging, get_logger
from shared.metrics import WorkerMetrics
from shared.mongo import Document, connect_mongo, database, ensure_indexes, ping
from shared.patience import patiently
from shared.settings import Settings, load_settings

CHECK_TIMEOUT_S = 2.0

Check = Callable[[], Awaitable[bool]]


@contextlib.asynccontextmanager
async def worker_connections(
    settings: Settings,
) -> AsyncIterator[tuple[AsyncDatabase[Document], Broker]]:
    """Mongo (indexes and connection settings ensured) and a connected broker, waited for
    while they are away; both closed on exit."""
    mongo = connect_mongo(settings.mongo_url)
    broker = Broker(settings.amqp_url, prefix=settings.amqp_prefix)
    try:
        db = database(mongo)

        async def prepare_database() -> None:
            await ensure_indexes(db)
            await ensure_connection_settings(db, initial_api_key=settings.initial_api_key())

        await patiently(prepare_database, errors=(PyMongoError,), dependency="database")
        await broker.connect_patiently()
        yield db, broker
    finally:
        await broker.close()
        await mongo.close()


def serve_worker(name: str, run: Callable[[Settings], Coroutine[Any, Any, None]]) -> None:
    """The entry point of a worker: settings, logs, then `run` until SIGINT or SIGTERM."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    run_until_signalled(run(settings))
    get_logger(f"services.{name}").info(f"{name}_stopped")


def worker_health(
    settings: Settings, db: AsyncDatabase[Document], broker: Broker, metrics: WorkerMetrics
) -> contextlib.AbstractAsyncContextManager[None]:
    """A worker's `/healthz`, `/readyz` (its database and broker) and `/metrics`, on
    `ROP_HEALTH_PORT`."""
    return serve_health(
        settings.http_host, settings.health_port, dependency_checks(db, broker), metrics.registry
    )


def dependency_checks(db: AsyncDatabase[Document], broker: Broker) -> dict[str, Check]:
    """Readiness of a worker: its database answers and its broker connection is up."""

    async def mongo() -> bool:
        await ping(db)
        return True

    async def amqp() -> bool:
        return broker.is_connected

    return {"mongo": mongo, "broker": amqp}


async def run_all(*work: Coroutine[Any, Any, None]) -> None:
    """Run a service's loops together until cancelled; cancelled, wait until each has
    finished its own shutdown (a consumer draining what it holds). `asyncio.gather`
    would not: it returns as soon as one of them is cancelled, and the connections
    close under the others."""
    async with asyncio.TaskGroup() as group:
        for coroutine in work:
            group.create_task(coroutine)


def run_until_signalled(work: Coroutine[Any, Any, None]) -> None:
    """Run a service's main coroutine; SIGINT or SIGTERM cancels it for a clean shutdown."""

    async def runner() -> None:
        task = asyncio.ensure_future(work)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(runner())


@contextlib.asynccontextmanager
async def serve_health(
    host: str, port: int, checks: Mapping[str, Check], registry: CollectorRegistry | None = None
) -> AsyncIterator[None]:
    """Serve health endpoints while the block runs; `/readyz` is 200 when every check passes."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                ok = await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            except Exception:
                ok = False
            results[name] = "ok" if ok else "down"
        ready = all(value == "ok" for value in results.values())
        return web.json_response(
            {"status": "ready" if ready else "unavailable", "checks": results},
            status=200 if ready else 503,
        )

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry) if registry is not None else b""
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        yield
    finally:
        await runner.cleanup()
