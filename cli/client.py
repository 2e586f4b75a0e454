"""HTTP client for the CLI: the same public API curl users have."""

import json
from pathlib import Path
from typing import Annotated

import httpx
import typer
from typer.core import TyperGroup

from core.settings import get_settings


def base_url() -> str:
    settings = get_settings()
    return settings.url or settings.base_url.replace("0.0.0.0", "127.0.0.1")


def client() -> httpx.Client:
    headers = {}
    token = get_settings().token
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=base_url(), headers=headers, timeout=30)


def call(method: str, path: str, **kw) -> httpx.Response:
    if method.upper() not in ("GET", "HEAD") and "json" not in kw:
        # The API takes every write as JSON, with or without a body (api/web_guards.py).
        kw["headers"] = {"Content-Type": "application/json", **kw.get("headers", {})}
    try:
        with client() as c:
            resp = c.request(method, path, **kw)
    except httpx.ConnectError:
        typer.secho(
            f"cannot reach labq at {base_url()} (is `labq up` running?)", fg="red", err=True
        )
        raise typer.Exit(2) from None
    if resp.status_code >= 400:
        try:
            body = resp.json()
            msg = body.get("message") or body.get("detail")
        except ValueError:
            msg = resp.text
        typer.secho(f"error {resp.status_code}: {msg}", fg="red", err=True)
        raise typer.Exit(1)
    return resp


def read_json(path: Path):
    """A spec file's JSON, or a clear error and exit 1."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        typer.secho(f"{path}: not valid JSON: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None


Priority = Annotated[
    str,
    typer.Option(help="where its runs rank among queued ones: low, normal or high"),
]


def delete(what: str, path: str) -> None:
    """DELETE `path` and say what went (the API's `Deleted` answer)."""
    d = call("DELETE", path).json()
    stopped = f", {len(d['stopped'])} stopped while queued or training" if d["stopped"] else ""
    typer.echo(
        f"deleted {what}: {len(d['experiments'])} run(s){stopped}, {d['epochs']} epoch rows, "
        f"{d['artifacts']} artifacts ({d['artifact_bytes'] / 1e6:.1f} MB)"
    )


class FileOrCommand(TyperGroup):
    """A command group whose first argument may be a spec file: `labq sweep FILE` is short for
    `labq sweep submit FILE` (likewise `labq search FILE`)."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["submit", *args]
        return super().parse_args(ctx, args)
