"""HTML forms to the API's models and back: dotted field names (`stages.0.points.1.weight`)
become nested dicts and lists, and a validation error becomes a message per field name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import RopError

# Fields typed one item per line, or separated by commas, and checkboxes.
LINE_LISTS = frozenset({"phrases", "options", "emails"})
COMMA_LISTS = frozenset({"deal_stage_ids", "manager_ids", "team_manager_ids"})
# A checkbox comes after a hidden field of the same name with an empty value, so an
# unticked box still says False (the last value of a name wins).
CHECKBOXES = frozenset({"forbidden", "active", "team_supervisors", "digest"})
# Fields with a value even in an untouched new row: they alone do not make a row.
PRESET = CHECKBOXES | {"method", "speaker", "type", "metric"}


def _value(name: str, raw: str) -> Any:
    if name in LINE_LISTS:
        return [line.strip() for line in raw.splitlines() if line.strip()]
    if name in COMMA_LISTS:
        return [item.strip() for item in raw.replace("\n", ",").split(",") if item.strip()]
    if name in CHECKBOXES:
        return raw in ("on", "true", "1")
    return raw.strip()


def _is_blank(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_is_blank(item) for key, item in value.items() if key not in PRESET)
    if isinstance(value, list):
        return all(_is_blank(item) for item in value)
    return value in ("", None)


def _compact(value: Any) -> Any:
    """Numbered groups become lists without their blank rows; empty text is left out so
    the model's default applies."""
    if isinstance(value, dict):
        if value and all(key.isdigit() for key in value):
            items = [_compact(value[key]) for key in sorted(value, key=int)]
            return [item for item in items if not _is_blank(item)]
        return {key: _compact(item) for key, item in value.items() if item != ""}
    return value


def nested(
    form: Mapping[str, str], *, skip: frozenset[str] = frozenset({"csrf_token"})
) -> dict[str, Any]:
    """Turn flat dotted names into the nested body the API takes."""
    tree: dict[str, Any] = {}
    for name, raw in form.items():
        if name in skip:
            continue
        parts = name.split(".")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _value(parts[-1], raw)
    result: dict[str, Any] = _compact(tree)
    return result


def field_errors(error: RopError) -> dict[str, str]:
    """Messages by dotted field name (the first per field)."""
    messages: dict[str, str] = {}
    for detail in error.details:
        messages.setdefault(str(detail.get("field", "")), str(detail.get("message", "")))
    return messages
