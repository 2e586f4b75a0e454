"""The data dir is private to the user labq runs as: the directory and every directory in it 0700,
every file 0600 (the SQLite database with its token hashes, Redis's append-only file, the logs).

Every `labq` command that serves or stores (up, api, worker, migrate, token) sets the umask 077
(private_umask), so what labq and its children (Redis, uvicorn, Celery) create is private from
the start; `labq up` also tightens what an older labq left readable (make_private).

The embedded Redis's password is generated into the data dir at the first `labq up` and read from
there by every process that talks to that Redis (API, workers, CLI, test harness).
"""

import os
import secrets
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
REDIS_PASSWORD_FILE = "redis.password"

_passwords: dict[Path, str] = {}


def private_umask() -> None:
    """Files and directories this process (and its children) creates: for its user only."""
    os.umask(PRIVATE_UMASK)


def make_private(data_dir: Path) -> None:
    """Create `data_dir` if needed and make it and everything in it readable by its owner only."""
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    data_dir.chmod(DIR_MODE)
    for root, dirs, files in os.walk(data_dir):
        for name in dirs:
            os.chmod(os.path.join(root, name), DIR_MODE, follow_symlinks=False)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, FILE_MODE)


def redis_password_path(data_dir: Path) -> Path:
    return data_dir / REDIS_PASSWORD_FILE


def ensure_redis_password(data_dir: Path) -> str:
    """The embedded Redis's password, generated (256 random bits, file mode 0600) on first use."""
    path = redis_password_path(data_dir)
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
    password = redis_password(data_dir)
    if not password:
        raise RuntimeError(f"{path} is empty: delete it and start labq again")
    return password


def redis_password(data_dir: Path) -> str | None:
    """The password in the data dir, or None when there is none (a Redis started without one)."""
    key = data_dir.resolve()
    if key not in _passwords:
        try:
            password = redis_password_path(data_dir).read_text().strip()
        except FileNotFoundError:
            return None
        if not password:
            return None
        _passwords[key] = password
    return _passwords[key]
