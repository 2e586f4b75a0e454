"""Page routes of the dashboard: `/`, `/runs/{id}`, `/compare`, `/submit`, `/search(/{id})`, and
the static assets.

Each page is a thin shell rendered here; its data comes from the same JSON endpoints that curl users
have (the scripts in api/static fetch them). Every asset, the chart library included, is served by
labq itself from api/static, so the dashboard works on an offline machine.
"""

from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.deps import ActorDep, IdPath, get_experiment, get_sight
from core.constants import FINISHED, STATUSES
from db import searches
from db.session import session_scope

API_DIR = FilePath(__file__).resolve().parents[1]
STATIC_DIR = API_DIR / "static"
TEMPLATES = Jinja2Templates(directory=API_DIR / "templates")
MAX_COMPARE = 50  # runs overlaid on one compare page

router = APIRouter(include_in_schema=False)


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def _page(request: Request, template: str, title: str, **context: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request, template, {"title": title, "page": template.removesuffix(".html"), **context}
    )


@router.get("/", response_class=HTMLResponse)
def queue_page(request: Request) -> HTMLResponse:
    return _page(request, "queue.html", "Runs", statuses=STATUSES)


def same_origin_path(target: str) -> str:
    """`target` when it is a path on this server, else "/". Browsers read a backslash as a slash
    and drop tabs and newlines from URLs, so `/\\host` or `/<tab>/host` would leave labq: a
    path with either, any control character or whitespace, or an authority of its own is refused.
    (api/static/common.js applies the same rule again in the browser.)"""
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(c.isspace() or not c.isprintable() for c in target)
    ):
        return "/"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request, next: Annotated[str, Query(max_length=2000)] = "/"
) -> HTMLResponse:
    """Paste an API token; the page keeps it for this browser (see api/auth.py), then goes back
    to `next`, only ever a page of labq itself."""
    return _page(request, "login.html", "Sign in", next_url=same_origin_path(next))


@router.get("/runs/{experiment_id}", response_class=HTMLResponse)
def run_page(request: Request, experiment_id: IdPath, actor: ActorDep) -> HTMLResponse:
    with session_scope() as s:
        name = get_experiment(experiment_id, s, get_sight(s, actor)).name
    return _page(
        request,
        "run.html",
        f"#{experiment_id} {name}",
        experiment_id=experiment_id,
        name=name,
        finished=list(FINISHED),
    )


@router.get("/search", response_class=HTMLResponse)
def searches_page(request: Request) -> HTMLResponse:
    return _page(request, "search.html", "Searches", search_id=None, name="Searches")


@router.get("/search/{search_id}", response_class=HTMLResponse)
def search_page(request: Request, search_id: IdPath, actor: ActorDep) -> HTMLResponse:
    """One search, live: trials, best so far, parallel coordinates, importances, the answer."""
    with session_scope() as s:
        search = searches.get_search(s, search_id)
        if search is None or not get_sight(s, actor).sees(search.owner_id):
            raise HTTPException(404, f"search {search_id} not found")
        name = search.name
    return _page(
        request, "search.html", f"Search #{search_id} {name}", search_id=search_id, name=name
    )


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    ids: Annotated[
        str | None,
        Query(max_length=1000, pattern=r"^\d+(,\d+)*$", description="comma-separated run ids"),
    ] = None,
    sweep: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    run_ids = list(dict.fromkeys(int(i) for i in ids.split(","))) if ids else []
    if len(run_ids) > MAX_COMPARE:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", "ids"),
                    "type": "too_long",
                    "msg": f"at most {MAX_COMPARE} runs can be compared",
                }
            ]
        )
    return _page(
        request, "compare.html", "Compare", ids=run_ids, sweep=sweep, max_compare=MAX_COMPARE
    )


@router.get("/submit", response_class=HTMLResponse)
def submit_page(
    request: Request, from_: Annotated[int | None, Query(alias="from", ge=1)] = None
) -> HTMLResponse:
    return _page(request, "submit.html", "Submit", from_id=from_)
