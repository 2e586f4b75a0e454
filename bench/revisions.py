"""An earlier revision of labq, checked out beside this one for a before/after benchmark: a
throw-away `git worktree` whose `labq up` a LiveStack(root=...) runs."""

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cli.livestack import ROOT


@contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """The tree of `rev` (any git revision of this repository) in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="labq-rev-") as tmp:
        path = Path(tmp) / "labq"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
            check=True,
            capture_output=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                check=False,
                capture_output=True,
            )
