"""Operator commands: `python -m services.ingest.cli api-key | admin-password |
rebuild-rollups`.

The first two print secrets to the terminal on purpose (never to the logs); the last
recomputes the reports' rollups from every call.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from pymongo.errors import PyMongoError

from services.ingest.backoffice.accounts import INITIAL_PASSWORD_FILE
from shared import rollups
from shared.connection import load_connection_settings
from shared.mongo import connect_mongo, database
from shared.settings import load_settings


async def _print_api_key(mongo_url: str) -> int:
    client = connect_mongo(mongo_url, timeout_s=3)
    try:
        settings = await load_connection_settings(database(client))
    except (PyMongoError, LookupError) as exc:
        print(
            f"Cannot read the API key from MongoDB ({type(exc).__name__}). "
            "Is the system running (`make run`) and ROP_MONGO_URL pointing at its database?",
            file=sys.stderr,
        )
        return 1
    finally:
        await client.close()
    print(settings.api_key)
    return 0


async def _rebuild_rollups(mongo_url: str, timezone: str) -> int:
    client = connect_mongo(mongo_url, timeout_s=3)
    try:
        buckets = await rollups.rebuild(database(client), timezone)
    except PyMongoError as exc:
        print(f"Cannot rebuild the rollups ({type(exc).__name__}).", file=sys.stderr)
        return 1
    finally:
        await client.close()
    print(f"{buckets} day × manager rollups rebuilt ({timezone})")
    return 0


def main() -> None:
    """Dispatch the sub-command."""
    parser = argparse.ArgumentParser(prog="python -m services.ingest.cli")
    parser.add_argument("command", choices=["api-key", "admin-password", "rebuild-rollups"])
    command = parser.parse_args().command
    settings = load_settings()
    if command == "api-key":
        sys.exit(asyncio.run(_print_api_key(settings.mongo_url)))
    if command == "rebuild-rollups":
        sys.exit(asyncio.run(_rebuild_rollups(settings.mongo_url, settings.timezone)))
    password_file = settings.state_dir / INITIAL_PASSWORD_FILE
    if not password_file.exists():
        sys.exit(
            f"{password_file} does not exist: the admin password was set with "
            "ROP_ADMIN_PASSWORD, or the file was already deleted."
        )
    print(password_file.read_text().strip())


if __name__ == "__main__":
    main()
