"""Helper servers of the benchmarks.

bare      a bare aiohttp handler returning the ingest's JSON answer
insert    the same, plus the one insert_one of the same document into the same database
files     a static file host (sendfile) for the download benchmark
receiver  a webhook endpoint answering 200 for the notify benchmark
"""

from __future__ import annotations

import argparse
import json
import secrets
from datetime import UTC, datetime

from aiohttp import web

from shared.mongo import calls, connect_mongo, database

ANSWER = {
    "status": "success",
    "message": "Звонок успешно получен и поставлен в очередь на анализ",
    "estimated_processing_time": "5-15 минут",
}


def _answer(task_id: str) -> web.Response:
    return web.json_response(
        {**ANSWER, "task_id": task_id}, dumps=lambda obj: json.dumps(obj, ensure_ascii=False)
    )


async def bare(request: web.Request) -> web.Response:
    """Read the body and answer; no validation, no storage."""
    await request.read()
    return _answer(f"task_{secrets.token_hex(6)}")


def make_insert_handler(mongo_url: str) -> web.Application:
    """An app whose handler stores the call document (same shape as ingest's) and answers."""
    app = web.Application()
    collection = calls(database(connect_mongo(mongo_url)))

    async def insert(request: web.Request) -> web.Response:
        call = json.loads(await request.read())
        task_id = f"task_{secrets.token_hex(6)}"
        now = datetime.now(UTC)
        await collection.insert_one(
            {
                "_id": task_id,
                **call,
                "status": "queued",
                "received_at": now,
                "updated_at": now,
                "timeline": [{"status": "queued", "at": now}],
                "outbox": [
                    {
                        "event_id": secrets.token_hex(16),
                        "type": "call.received",
                        "version": 1,
                        "occurred_at": now.isoformat(),
                        "task_id": task_id,
                        "data": call,
                    }
                ],
                "outbox_pending": True,
            }
        )
        return _answer(task_id)

    app.router.add_post("/api/v1/calls", insert)
    return app


def main() -> None:
    """Serve one baseline."""
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["bare", "insert", "files", "receiver"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mongo-url", default="")
    parser.add_argument("--directory", default=".")
    args = parser.parse_args()
    if args.kind == "bare":
        app = web.Application()
        app.router.add_post("/api/v1/calls", bare)
    elif args.kind == "receiver":
        received: set[str] = set()

        async def receive(request: web.Request) -> web.Response:
            await request.read()
            received.add(request.headers.get("webhook-id", ""))
            return web.Response(text="ok")

        async def count(_: web.Request) -> web.Response:
            """How many webhook-ids arrived: the benchmark waits on this, not the database."""
            return web.json_response(len(received))

        app = web.Application()
        app.router.add_post("/hooks", receive)
        app.router.add_get("/hooks/count", count)
    elif args.kind == "files":
        app = web.Application()
        app.router.add_static("/", args.directory)
    else:
        app = make_insert_handler(args.mongo_url)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
