"""What a head of sales reads across calls: managers, the dashboard, a table's rows."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from services.ingest.backoffice import (
    catalog,
    exports,
    reports,
    trackers,
)
from services.ingest.backoffice.accounts import Session
from services.ingest.backoffice.filters import CallFilters
from services.ingest.edge import (
    INGEST,
    wants_xlsx,
    xlsx_response,
)
from services.ingest.webapp import charts
from services.ingest.webapp.frame import (
    ALL,
    LEADS,
    page,
    page_filters,
    query_without,
    render,
)
from shared.logging import get_logger
from shared.rollups import week_of

log = get_logger(__name__)
routes = web.RouteTableDef()


def _weeks_back(request: web.Request, weeks: int) -> tuple[CallFilters, dict[str, str]]:
    """The query's filters, by default from the start of the week `weeks` weeks ago: whole
    weeks (a weekly chart's first point is not part of a week; the rollups add whole
    weeks up once)."""
    filters, errors = page_filters(request)
    if filters.date_from is None and not errors:
        _, last = filters.days()
        start = week_of(last) - timedelta(weeks=weeks)
        filters = filters.model_copy(update={"date_from": start})
    return filters, errors


def _day_month(iso_day: str) -> str:
    """2026-11-22 as 22.11, how axis labels read in Russian."""
    return f"{iso_day[8:10]}.{iso_day[5:7]}"


@routes.get("/managers")
@page(*LEADS)
async def managers_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /managers: the rating, and each manager's average score by week."""
    filters, errors = _weeks_back(request, 8)
    rating = await reports.managers(
        request.app[INGEST].db,
        session.user,
        filters,
        rollup_zone=request.app[INGEST].settings.timezone,
    )
    weeks = sorted({point["week"] for item in rating["items"] for point in item["weekly"]})
    series = [
        charts.Series(
            item["manager_name"] or item["manager_id"],
            [{p["week"]: p["average"] for p in item["weekly"]}.get(week) for week in weeks],
        )
        for item in rating["items"][: len(charts.PALETTE)]
    ]
    labels = [_day_month(week) for week in weeks]
    first, last = filters.days()
    return render(
        request,
        session,
        "managers.html",
        {
            "rating": rating["items"],
            "errors": errors,
            "period": {"from": first, "to": last},
            "chart": charts.line_chart("Средняя оценка по неделям", labels, series, unit="%"),
            "legend": charts.legend(series),
            "weeks": weeks,
            "series": series,
        },
    )


@routes.get("/dashboard")
@page(*ALL)
async def dashboard_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /dashboard: the period at a glance."""
    filters, errors = page_filters(request)
    board = await reports.dashboard(
        request.app[INGEST].db,
        session.user,
        filters,
        rollup_zone=request.app[INGEST].settings.timezone,
    )
    days = board["days"]
    labels = [_day_month(day["day"]) for day in days]
    scores = charts.Series("Средняя оценка", [day["average_score"] for day in days])
    ratio_labels = [f"{b['from']:.0%}–{b['to']:.0%}" for b in board["talk_ratio"]]
    first, last = filters.days()
    tracker_days, tracked = await trackers.over_time(request.app[INGEST].db, session.user, filters)
    tracker_series = [charts.Series(row["name"], row["days"]) for row in tracked]
    return render(
        request,
        session,
        "dashboard.html",
        {
            "board": board,
            "errors": errors,
            "period": {"from": first, "to": last},
            "total_calls": sum(day["calls"] for day in days),
            "calls_chart": charts.bar_chart(
                "Звонков в день", labels, [day["calls"] for day in days]
            ),
            "score_chart": charts.line_chart("Средняя оценка по дням", labels, [scores], unit="%"),
            "ratio_chart": charts.bar_chart(
                "Распределение доли речи менеджера",
                ratio_labels,
                [bucket["calls"] for bucket in board["talk_ratio"]],
            ),
            "ratio_labels": ratio_labels,
            "max_failed": max([row["failed"] for row in board["failed_stages"]] or [1]),
            "tracked": tracked,
            "trackers_chart": charts.line_chart(
                "Звонков с упоминанием по дням",
                [_day_month(day.isoformat()) for day in tracker_days],
                tracker_series,
            )
            if tracked
            else None,
            "trackers_legend": charts.legend(tracker_series),
        },
    )


@routes.get("/settings/tables/{id}/rows")
@page(*LEADS)
async def table_rows_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /settings/tables/{id}/rows: the rows a table collected, as a table or Excel."""
    db = request.app[INGEST].db
    table = await catalog.get(db, catalog.TABLE, request.match_info["id"], session.user)
    filters, errors = _weeks_back(request, 4)
    if wants_xlsx(request):
        rows = reports.table_rows(db, session.user, table["_id"], filters)
        return await xlsx_response(
            request, f"{table['_id']}.xlsx", exports.table_workbook(table, rows, filters.zone)
        )
    listing = await reports.table_page(db, session.user, table["_id"], filters)
    first, last = filters.days()
    return render(
        request,
        session,
        "table_rows.html",
        {
            "table": table,
            "rows": listing["items"],
            "next": listing["next"],
            "after": filters.after,
            "errors": errors,
            "period": {"from": first, "to": last},
            "page_query": query_without(request, "after", "format"),
            "export_query": query_without(request, "after", "format"),
        },
    )
