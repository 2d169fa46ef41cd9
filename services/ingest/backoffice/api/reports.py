"""Reports through the JSON API: the managers' rating, the dashboard, the rows an
analytics table collected (or their Excel file)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.ingest.apidoc import INVALID, MISSING, Answer, documented
from services.ingest.backoffice import catalog, exports, reports
from services.ingest.backoffice.accounts import Role, Session
from services.ingest.backoffice.filters import CallFilters
from services.ingest.edge import (
    INGEST,
    call_filters,
    json_response,
    require_session,
    wants_xlsx,
    xlsx_response,
)

routes = web.RouteTableDef()


@routes.get("/api/v1/managers")
@documented(
    "Rating, calls, average score, perfect calls, talk ratio, weekly averages per manager "
    "(admin, supervisor)",
    query=CallFilters,
    answer=reports.ManagersReport,
    errors=INVALID,
)
async def managers(request: web.Request) -> web.Response:
    """GET /api/v1/managers (admin, supervisor): rating and averages in the period."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    return await _report(request, session, reports.managers)


@routes.get("/api/v1/dashboard")
@documented(
    "Calls and average score per day, stages failed most, talk ratios",
    query=CallFilters,
    answer=reports.Dashboard,
    errors=INVALID,
)
async def dashboard(request: web.Request) -> web.Response:
    """GET /api/v1/dashboard: calls and scores per day, failed stages, talk ratios."""
    session = await require_session(request)
    return await _report(request, session, reports.dashboard)


async def _report(
    request: web.Request, session: Session, report: Callable[..., Awaitable[Any]]
) -> web.Response:
    """A report of the query's filters (from the rollups where they hold them)."""
    ingest = request.app[INGEST]
    answer = await report(
        ingest.db, session.user, call_filters(request), rollup_zone=ingest.settings.timezone
    )
    return json_response(answer)


@routes.get("/api/v1/tables/{id}/rows")
@documented(
    "Rows a table collected, a page at a time; every row of the filters as Excel "
    "(admin, supervisor)",
    query=CallFilters,
    answer=Answer("OK", reports.TableRows, xlsx=True),
    errors={**INVALID, **MISSING},
)
async def table_rows(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/tables/{id}/rows (admin, supervisor): JSON, or `?format=xlsx`."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    db = request.app[INGEST].db
    table = await catalog.get(db, catalog.TABLE, request.match_info["id"], session.user)
    filters = call_filters(request)
    if not wants_xlsx(request):
        return json_response(await reports.table_page(db, session.user, table["_id"], filters))
    rows = reports.table_rows(db, session.user, table["_id"], filters)
    return await xlsx_response(
        request, f"{table['_id']}.xlsx", exports.table_workbook(table, rows, filters.zone)
    )
