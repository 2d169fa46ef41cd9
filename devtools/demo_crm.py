"""A stand-in CRM for `make run` on 127.0.0.1:8090: it hosts sample recordings of one
manager (a Russian stereo call, the same conversation as a mono 8 kHz G.711 mix such as
many PBXs send, and an English stereo call) and prints the webhooks it receives, so a
newcomer sees calls go all the way round.

The sample script, binding and table send their webhooks here; in production the URL
policy refuses loopback, so those sample deliveries fail at once without any traffic.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from aiohttp import web

from devtools.samples import Speaker, Voices, one_after_another, write_call, write_tone

DEMO_DIR = Path(".data/demo")
SAMPLE_CALL = "sample-call.mp3"
SAMPLE_MONO_CALL = "sample-mono-call.wav"
SAMPLE_ENGLISH_CALL = "sample-call-en.mp3"
RUSSIAN: list[tuple[Speaker, str]] = [
    ("client", "Алло, слушаю."),
    ("manager", "Добрый день, меня зовут Анна, я звоню из компании Ромашка."),
    ("manager", "Вам удобно сейчас говорить?"),
    ("client", "Да, у меня есть пара минут."),
    ("manager", "Что вы ищете для офиса, и какой у вас бюджет?"),
    ("client", "Нам нужны цветы для ресепшена, бюджет пятьсот тысяч рублей."),
    ("manager", "Мы предлагаем свежие цветы каждое утро. Я перезвоню вам в четверг."),
]
ENGLISH: list[tuple[Speaker, str]] = [
    ("client", "Hello?"),
    ("manager", "Good afternoon, my name is Anna from the flower company."),
    ("client", "Hello, yes, I have a minute."),
    ("manager", "Is it convenient to talk now? What are you looking for?"),
    ("client", "We need flowers for the office. Our budget is five hundred thousand."),
    ("manager", "We offer fresh flowers every morning. I will call you back on Thursday."),
]
# (what is said, voices, stereo): Festival's Russian voice and a twin of it with a
# higher pitch; the same manager on the Russian calls, so that the stereo one teaches
# their voiceprint.
SAMPLES = {
    SAMPLE_CALL: (RUSSIAN, Voices("festival:ru", "festival:ru@1.27"), True),
    SAMPLE_MONO_CALL: (RUSSIAN, Voices("festival:ru", "festival:ru@1.22"), False),
    SAMPLE_ENGLISH_CALL: (ENGLISH, Voices("festival:slt", "festival:kal"), True),
}


def ensure_sample_calls() -> None:
    """The sample calls (Festival's voices) or, without Festival, tones."""
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    for name, (said, voices, stereo) in SAMPLES.items():
        path = DEMO_DIR / name
        if path.exists():
            continue
        rate = 16000 if stereo else 8000
        if shutil.which("text2wave"):
            lines, duration_s = one_after_another(said, voices)
            write_call(
                path,
                lines,
                duration_s=duration_s,
                stereo=stereo,
                sample_rate_hz=rate,
                voices=voices,
                encoding=None if stereo else "ulaw",
            )
        else:
            write_tone(path, sample_rate_hz=rate, channels=2 if stereo else 1, duration_s=30)


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
