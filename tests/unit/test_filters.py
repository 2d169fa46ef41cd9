"""The calls filters as Mongo filters: every field at the top, so that an index serves
them (SecantusDB scans the whole collection for a filter under a top-level `$and`), and
the viewer's visibility kept; where a page starts, as `after` carries it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.ingest.backoffice.accounts import Role, User
from services.ingest.backoffice.filters import CallFilters, Position
from shared.errors import InvalidRequest
from shared.mongo import all_of
from tests.helpers import ADMIN, TEAM

OWN = User(id="u3", email="m@example.ru", role=Role.MANAGER, manager_id="mgr_1", active=True)
UNLINKED = User(id="u4", email="n@example.ru", role=Role.MANAGER, manager_id=None, active=True)


@pytest.mark.parametrize("viewer", [ADMIN, TEAM, OWN])
@pytest.mark.parametrize(
    "values",
    [
        {},
        {"manager_id": "mgr_1", "status": "done", "score_min": "10", "score_max": "90"},
        {"client": "deal_1", "stage_id": "f", "deal_stage_id": "s", "roles": "uncertain"},
    ],
)
def test_every_field_is_at_the_top_with_the_time_first(viewer: User, values: dict) -> None:
    query = CallFilters.from_query(values).query(viewer)
    assert not [field for field in query if field.startswith("$")]
    assert next(iter(query)) == "received_at"
    assert all_of({"_id": "task_1"}, viewer.visibility()).keys() <= {"_id", "manager_id"}


def test_a_manager_filter_narrows_the_visibility_and_never_widens_it() -> None:
    def managers(viewer: User, manager_id: str) -> object:
        return CallFilters(manager_id=manager_id).query(viewer).get("manager_id")

    assert managers(TEAM, "mgr_3") == "mgr_3"
    assert managers(TEAM, "") == {"$in": ["mgr_1", "mgr_3"]}
    assert managers(OWN, "mgr_1") == "mgr_1"
    for viewer, other in ((TEAM, "mgr_2"), (OWN, "mgr_2"), (UNLINKED, "mgr_1")):
        query = CallFilters(manager_id=other).query(viewer)
        assert "manager_id" not in query
        assert query["_id"] == {"$in": []}  # nothing
    assert managers(ADMIN, "mgr_9") == "mgr_9"


def test_a_fields_second_condition_goes_under_and() -> None:
    assert all_of({"a": 1, "b": 2}, {"a": {"$gt": 0}}, {}) == {
        "a": 1,
        "b": 2,
        "$and": [{"a": {"$gt": 0}}],
    }


def test_a_position_round_trips_and_a_made_up_one_is_refused() -> None:
    position = Position(datetime(2026, 11, 30, 12, 0, 0, 123000, tzinfo=UTC), "task_1", 62.5)
    assert Position.decode(position.encode()) == position
    assert CallFilters.from_query({"after": position.encode()}).start == position
    for bad in ("x", "W10", "WzEsMiwzXQ", "WyJ4IiwidCIsbnVsbF0"):  # [], [1,2,3], ["x","t",null]
        with pytest.raises(InvalidRequest):
            CallFilters.from_query({"after": bad})
