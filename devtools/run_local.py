"""`make run`: the whole system on this machine with the embedded defaults.

Starts SecantusDB (data under .data/mongo) unless ROP_MONGO_URL is set, checks
that RabbitMQ answers, then runs every service as its own process until Ctrl-C; a
process that exits is started again (devtools/supervisor.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from devtools.demo_crm import SAMPLE_CALL, SAMPLE_ENGLISH_CALL, SAMPLE_MONO_CALL
from devtools.processes import port_open, spawn, start_secantus
from devtools.supervisor import Supervised, Supervisor
from shared.connection import load_connection_settings
from shared.mongo import connect_mongo, database

# Each service and the port its health endpoints answer on.
SERVICES = {"ingest": 8080, "downloader": 8081, "analyzer": 8082, "notifier": 8083}
DATA_DIR = Path(".data")
EMBEDDED_MONGO_PORT = 27017
DEMO_CRM_PORT = 8090
READY_TIMEOUT_S = 60.0
# The stereo call first: once analysed, it has taught the manager's voiceprint, which then
# tells who is who on the mono one.
DEMO_CALLS = {"demo-call-1": SAMPLE_CALL, "demo-call-2": SAMPLE_MONO_CALL}
DEMO_ANALYSIS_TIMEOUT_S = 120.0


def _check_rabbitmq(amqp_url: str) -> None:
    parts = urlsplit(amqp_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    if not port_open(host, port):
        sys.exit(
            f"RabbitMQ is not reachable at {host}:{port}.\n"
            "Start it (Debian: `apt-get install rabbitmq-server && rabbitmq-server -detached`)\n"
            "or point ROP_AMQP_URL at a running broker, then run `make run` again."
        )


def _wait_healthy(name: str, url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{name} exited with code {process.returncode}; see its log above")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"{name} did not become healthy at {url} in {READY_TIMEOUT_S:.0f}s")


def main() -> None:
    """Start everything, print where it is, keep it running; stop it all on Ctrl-C."""
    # Explicit handlers: a launcher started in the background inherits an ignored SIGINT.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: sys.exit(0))
    supervisor = Supervisor()
    try:
        _run(supervisor)
    finally:
        supervisor.stop_all()


def _run(supervisor: Supervisor) -> None:
    env = dict(os.environ)
    env.setdefault("ROP_FETCH_ALLOW_LOOPBACK", "true")
    env.setdefault("ROP_PUBLIC_BASE_URL", f"http://127.0.0.1:{SERVICES['ingest']}")  # alert links
    env.setdefault("ROP_LOG_FORMAT", "console")
    DATA_DIR.mkdir(exist_ok=True)
    if "ROP_MONGO_URL" not in env:
        if port_open("127.0.0.1", EMBEDDED_MONGO_PORT):
            sys.exit(
                f"Port {EMBEDDED_MONGO_PORT} is taken: stop what listens there, "
                "or set ROP_MONGO_URL to use that database."
            )
        print(f"Starting SecantusDB on 127.0.0.1:{EMBEDDED_MONGO_PORT} (data in {DATA_DIR}/mongo)")
        supervisor.add(
            Supervised(
                "SecantusDB",
                lambda: start_secantus(
                    EMBEDDED_MONGO_PORT,
                    str(DATA_DIR / "mongo"),
                    log_path=DATA_DIR / "secantus.log",
                ),
            )
        ).launch()
        env["ROP_MONGO_URL"] = f"mongodb://127.0.0.1:{EMBEDDED_MONGO_PORT}/rop"
    _check_rabbitmq(env.get("ROP_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))

    supervisor.add(
        Supervised(
            "demo CRM",
            lambda: spawn(
                [sys.executable, "-m", "devtools.demo_crm", "--port", str(DEMO_CRM_PORT)]
            ),
        )
    ).launch()
    host = env.get("ROP_HTTP_HOST", "127.0.0.1")
    port = env.get("ROP_HTTP_PORT", str(SERVICES["ingest"]))
    for service, health_port in SERVICES.items():
        service_env = {**env, "ROP_HEALTH_PORT": port if service == "ingest" else str(health_port)}
        process = supervisor.add(
            Supervised(
                service,
                functools.partial(
                    spawn, [sys.executable, "-m", f"services.{service}"], service_env
                ),
            )
        ).launch()
        _wait_healthy(service, f"http://{host}:{service_env['ROP_HEALTH_PORT']}/healthz", process)
    base_url = f"http://{host}:{port}"
    key = asyncio.run(_api_key(env["ROP_MONGO_URL"]))
    submitted = []
    for call_id, recording in DEMO_CALLS.items():
        submitted.append(_submit_demo_call(key, base_url, call_id, recording))
        _wait_analysed(key, base_url, call_id)
    demo = ", ".join(submitted)
    print(
        f"\nЦифровой РОП is running: {base_url}\n"
        f"  Web app:  {base_url}/ (log in as the admin below)\n"
        f"  CRM API:  POST {base_url}/api/v1/calls?apiKey=KEY (JSON)\n"
        f"            POST {base_url}/api/v1/calls/audio-upload?apiKey=KEY (form)\n"
        f"  OpenAPI:  {base_url}/api/v1/openapi.json\n"
        "  API key:  make api-key\n"
        f"  Demo CRM: http://127.0.0.1:{DEMO_CRM_PORT}/files/{SAMPLE_CALL} (Russian, stereo),\n"
        f"            http://127.0.0.1:{DEMO_CRM_PORT}/files/{SAMPLE_MONO_CALL} (the same, mono "
        "8 kHz),\n"
        f"            http://127.0.0.1:{DEMO_CRM_PORT}/files/{SAMPLE_ENGLISH_CALL} (English)\n"
        "            (its webhooks are printed here)\n"
        f"  Demo calls: {demo} (see them on {base_url}/calls)\n"
        f"  Admin:    {env.get('ROP_ADMIN_EMAIL', 'admin@rop.local')}, password: "
        + ("ROP_ADMIN_PASSWORD" if "ROP_ADMIN_PASSWORD" in env else "make admin-password")
        + "\nA service that stops is started again. Press Ctrl-C to stop everything.\n",
        flush=True,
    )
    supervisor.tend_forever()


def _submit_demo_call(key: str, base_url: str, call_id: str, recording: str) -> str:
    """Post one of the demo CRM's sample calls once, so the web app has calls to show at
    once; on later starts it is already there (409)."""
    body = json.dumps(
        {
            "call_id": call_id,
            "audio_url": f"http://127.0.0.1:{DEMO_CRM_PORT}/files/{recording}",
            "duration": 30,
            "manager_id": "mgr_001",
            "manager_name": "Иванов Иван Петрович",
            "deal_id": "deal_5678",
        }
    ).encode()
    request = urllib.request.Request(
        f"{base_url}/api/v1/calls?{urlencode({'apiKey': key})}",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10):
            return f"{call_id} submitted"
    except urllib.error.HTTPError as exc:
        if exc.code == 409:
            return f"{call_id} already submitted"
        return f"{call_id} refused ({exc.code})"


def _wait_analysed(key: str, base_url: str, call_id: str) -> None:
    """Until a demo call is analysed (or a while has passed)."""
    url = f"{base_url}/api/v1/calls/{call_id}?{urlencode({'apiKey': key})}"
    deadline = time.monotonic() + DEMO_ANALYSIS_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if json.load(response)["status"] not in ("queued", "downloading", "analyzing"):
                    return
        except OSError:
            pass
        time.sleep(1.0)


async def _api_key(mongo_url: str) -> str:
    client = connect_mongo(mongo_url)
    try:
        return (await load_connection_settings(database(client))).api_key
    finally:
        await client.close()


if __name__ == "__main__":
    main()
