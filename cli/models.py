"""`labq pull ID [-o FILE]`: a finished run's trained model, as a Keras file."""

import os
from pathlib import Path
from typing import Annotated

import typer

from cli.client import call


def pull(
    experiment_id: int,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="file or directory (default ./labq-ID.keras)"),
    ] = None,
):
    """Download a finished run's model.keras (load it with keras.saving.load_model)."""
    name = f"labq-{experiment_id}.keras"
    target = (output / name if output.is_dir() else output) if output else Path(name)
    data = call("GET", f"/experiments/{experiment_id}/model.keras").content
    info = call("GET", f"/experiments/{experiment_id}").json().get("model") or {}
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, target)  # never a half-written model under the final name
    weights = info.get("weights") or "?"
    if info.get("best_epoch"):
        weights += f" (epoch {info['best_epoch']})"
    typer.echo(f"{target}: {len(data)} bytes, {weights} weights of experiment {experiment_id}")
