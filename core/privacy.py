"""The data dir is private to the user labq runs as: the directory and labq's directories in it
0700, labq's files 0600 (the SQLite database with its token hashes, Redis's append-only file and
configuration, the password, the logs).

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
# What labq keeps in the data dir: names that start with these (labq.db and its journal, backups
# set aside, the lock and state files; redis/ and the password) and these directories. Only they
# are tightened, in case LABQ_DATA_DIR names a directory that holds other things too.
OWN_PREFIXES = ("labq", "redis")
OWN_DIRS = ("logs", "datasets")

_passwords: dict[Path, str] = {}


def private_umask() -> None:
    """Files and directories this process (and its children) creates: for its user only."""
    os.umask(PRIVATE_UMASK)


def _owner_only(path: str) -> None:
    """Take away every permission of the group and of others (0644 -> 0600, 0755 -> 0700)."""
    if not os.path.islink(path):
        os.chmod(path, os.stat(path).st_mode & ~PRIVATE_UMASK & 0o7777)


def make_private(data_dir: Path) -> None:
    """Create `data_dir` if needed, and make it and labq's files in it its owner's only."""
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _owner_only(str(data_dir))
    for top in data_dir.iterdir():
        if top.is_symlink() or not (top.name.startswith(OWN_PREFIXES) or top.name in OWN_DIRS):
            continue
        _owner_only(str(top))
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                _owner_only(os.path.join(root, name))


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
