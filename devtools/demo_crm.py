"""A stand-in CRM for `make run` on 127.0.0.1:8090: it hosts two sample recordings of one
manager (a stereo call, and a mono 8 kHz G.711 mix such as many PBXs send) and prints
the webhooks it receives, so a newcomer sees calls go all the way round.

The sample script, binding and table send their webhooks here; in production the URL
policy refuses loopback, so those sample deliveries fail at once without any traffic.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from aiohttp import web

from devtools.samples import Line, Voices, write_call, write_tone

DEMO_DIR = Path(".data/demo")
SAMPLE_CALL = "sample-call.mp3"
SAMPLE_MONO_CALL = "sample-mono-call.wav"
LINES: list[Line] = [
    ("manager", 1.0, "Good afternoon, my name is Anna from the flower company."),
    ("client", 5.5, "Hello, yes, I have a minute."),
    ("manager", 8.5, "Is it convenient to talk now? What are you looking for?"),
    ("client", 13.0, "We need flowers for the office. Our budget is five hundred thousand."),
    ("manager", 19.0, "We offer fresh flowers every morning. I will call you back on Thursday."),
]


# The same manager on both calls: the stereo one teaches their voiceprint.
VOICES = {
    SAMPLE_CALL: Voices("en-us+m3", "en-gb+f2"),
    SAMPLE_MONO_CALL: Voices("en-us+m3", "en-us+f4"),
}


def ensure_sample_calls() -> None:
    """Short English calls (espeak-ng) or, without it, tones."""
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    for name, stereo in ((SAMPLE_CALL, True), (SAMPLE_MONO_CALL, False)):
        path = DEMO_DIR / name
        if path.exists():
            continue
        rate = 16000 if stereo else 8000
        if shutil.which("espeak-ng"):
            encoding = None if stereo else "ulaw"
            write_call(
                path,
                LINES,
                duration_s=26,
                stereo=stereo,
                sample_rate_hz=rate,
                voices=VOICES[name],
                encoding=encoding,
            )
        else:
            write_tone(path, sample_rate_hz=rate, channels=2 if stereo else 1, duration_s=26)


async def receive(request: web.Request) -> web.Response:
    payload = await request.json()
    summary = {"type": payload.get("type"), "call_id": payload.get("call_id")}
    if "checklist" in payload:
        summary["score"] = payload["checklist"]["score"]["text"]
    if "table" in payload:
        summary["row"] = payload["table"]["row"]
    if "error" in payload:
        summary["error"] = payload["error"]["code"]
    print(
        f"demo CRM received webhook {request.headers.get('webhook-id')}: "
        f"{json.dumps(summary, ensure_ascii=False)}",
        flush=True,
    )
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    ensure_sample_calls()
    app = web.Application()
    app.router.add_static("/files", DEMO_DIR)
    app.router.add_post("/hooks/{kind}", receive)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
