"""Generated calls for the benchmarks, cached under .data/bench by what they say and sound like."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from devtools.samples import Line, Spoken, write_call

CACHE = Path(".data/bench")


def generated(
    name: str, lines: list[Line], *, container: str = "mp3", **sound: Any
) -> tuple[Path, list[Spoken]]:
    """A generated call (`write_call` with `sound`) and its layout, made once and cached
    under a name that changes with its lines and sound."""
    CACHE.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(repr((lines, sorted(sound.items()))).encode()).hexdigest()[:10]
    path = CACHE / f"{name}-{digest}.{container}"
    layout = path.with_name(path.name + ".json")
    if not path.exists() or not layout.exists():
        made = write_call(path, lines, **sound)
        layout.write_text(json.dumps([asdict(line) for line in made]))
    return path, [Spoken(**line) for line in json.loads(layout.read_text())]
