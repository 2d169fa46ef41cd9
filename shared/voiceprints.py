"""Managers' voiceprints: what tells the manager's voice on a one-channel recording.

A voiceprint is the speech-weighted mean of a manager's voice embeddings (256 numbers
from the GE2E encoder, no audio) over their newest calls where the voice is known to
be theirs: the manager channel of stereo calls, and one-channel calls whose roles a
person confirmed or swapped. Each such call is one sample, replaced if the same call
comes again (re-analysis), so learning is idempotent.

Voiceprints are personal data: they exist only while the admin setting allows them,
and are deleted with the manager's user or on request, together with the per-call
voice embeddings they could be rebuilt from.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from bson import Binary
from pydantic import Field
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from typing_extensions import TypedDict

from shared import call_details
from shared.events import utcnow
from shared.mongo import VOICEPRINTS, Document

Vector = npt.NDArray[np.float32]
Source = Literal["stereo", "confirmed"]
MAX_SAMPLES = 20
# Less speech than this makes no voiceprint worth trusting.
MIN_SPEECH_S = 10.0
_WRITE_ATTEMPTS = 5


def pack(vector: Vector) -> Binary:
    """An embedding as compact BSON (little-endian float32)."""
    return Binary(np.asarray(vector, dtype="<f4").tobytes())


def unpack(data: bytes) -> Vector:
    """An embedding stored by `pack`."""
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def _mean(samples: list[Document]) -> Vector:
    weights = np.array([sample["speech_s"] for sample in samples], dtype=np.float64)
    vectors = np.stack([unpack(sample["embedding"]) for sample in samples])
    mean = (vectors * np.maximum(weights, 1e-3)[:, None]).sum(axis=0)
    return np.asarray(mean / max(float(np.linalg.norm(mean)), 1e-8), dtype=np.float32)


async def learn(
    db: AsyncDatabase[Document],
    manager_id: str,
    *,
    task_id: str,
    embedding: Vector,
    speech_s: float,
    source: Source,
) -> None:
    """Add one call's sample of the manager's voice (replacing that call's earlier one)."""
    sample = {
        "task_id": task_id,
        "embedding": pack(embedding),
        "speech_s": round(speech_s, 2),
        "source": source,
        "at": utcnow(),
    }
    for _ in range(_WRITE_ATTEMPTS):
        current = await db[VOICEPRINTS].find_one({"_id": manager_id})
        kept = [s for s in (current or {}).get("samples", []) if s["task_id"] != task_id]
        samples = sorted([*kept, sample], key=lambda s: s["at"])[-MAX_SAMPLES:]
        fields = {
            "samples": samples,
            "embedding": pack(_mean(samples)),
            "speech_s": round(sum(s["speech_s"] for s in samples), 2),
            "updated_at": sample["at"],
        }
        if current is None:
            try:
                await db[VOICEPRINTS].insert_one(
                    {"_id": manager_id, "version": 1, "created_at": sample["at"], **fields}
                )
                return
            except DuplicateKeyError:
                continue  # another worker made it first: merge into theirs
        result = await db[VOICEPRINTS].update_one(
            {"_id": manager_id, "version": current["version"]},
            {"$set": {**fields, "version": current["version"] + 1}},
        )
        if result.matched_count:
            return
    raise RuntimeError(f"voiceprint of {manager_id} kept changing under this write")


async def voiceprint_of(db: AsyncDatabase[Document], manager_id: str) -> Vector | None:
    """The manager's voiceprint, if there is enough speech behind it."""
    document = await db[VOICEPRINTS].find_one({"_id": manager_id}, {"embedding": 1, "speech_s": 1})
    if document is None or document["speech_s"] < MIN_SPEECH_S:
        return None
    return unpack(document["embedding"])


class VoiceprintSummary(TypedDict):
    """What people may see of a voiceprint: where it came from, never the numbers."""

    manager_id: str
    calls: int
    stereo_calls: int
    confirmed_calls: Annotated[int, Field(description="Mono calls a person confirmed")]
    speech_s: float
    usable: Annotated[bool, Field(description="Learnt from enough speech to be used")]
    updated_at: Annotated[str, Field(description="ISO 8601")]


def summary(document: Document) -> VoiceprintSummary:
    """What people may see of a voiceprint: where it came from, never the numbers."""
    samples = document.get("samples", [])
    return {
        "manager_id": document["_id"],
        "calls": len(samples),
        "stereo_calls": sum(1 for s in samples if s["source"] == "stereo"),
        "confirmed_calls": sum(1 for s in samples if s["source"] == "confirmed"),
        "speech_s": document["speech_s"],
        "usable": document["speech_s"] >= MIN_SPEECH_S,
        "updated_at": document["updated_at"].isoformat(),
    }


async def list_voiceprints(db: AsyncDatabase[Document]) -> list[VoiceprintSummary]:
    """Every voiceprint's summary, by manager."""
    documents = await db[VOICEPRINTS].find({}, {"embedding": 0}).sort("_id", 1).to_list()
    return [summary(document) for document in documents]


async def forget(db: AsyncDatabase[Document], manager_id: str) -> bool:
    """Delete a manager's voiceprint and the voice embeddings of their calls."""
    deleted = await db[VOICEPRINTS].delete_one({"_id": manager_id})
    await call_details.forget_voices(db, {"manager_id": manager_id})
    return deleted.deleted_count > 0


async def forget_all(db: AsyncDatabase[Document]) -> None:
    """Delete every voiceprint and every call's voice embeddings."""
    await db[VOICEPRINTS].delete_many({})
    await call_details.forget_voices(db, {})
