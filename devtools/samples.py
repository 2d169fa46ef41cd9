"""A CRM call submission as the seed shows it, for tests, benchmarks and demos."""

from __future__ import annotations

import uuid
from typing import Any


def sample_call(**changes: Any) -> dict[str, Any]:
    """A valid JSON submission with a fresh call_id; a change to None removes the field."""
    call: dict[str, Any] = {
        "call_id": f"call_{uuid.uuid4().hex[:12]}",
        "audio_url": "https://crm.example/files/audio/call_12345.mp3",
        "duration": 900,
        "manager_id": "mgr_001",
        "manager_name": "Иванов Иван Петрович",
        "deal_id": "deal_5678",
        "deal_stage_id": "stage_qualification",
        "stage_id": "funnel_primary_calls",
    }
    call.update(changes)
    return {name: value for name, value in call.items() if value is not None}
