"""core.privacy on a real directory: labq's files lose every permission of the group and others,
and anything else that shares LABQ_DATA_DIR is left as it was; the Redis password is made once."""

import os
import stat

from core import privacy


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_make_private_tightens_labqs_files_only(tmp_path):
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    (data / "redis").mkdir()
    files = {
        "labq.db": 0o644,
        "labq.db-wal": 0o644,
        "labq.db.before-restore-20260101-000000": 0o644,
        "redis.password": 0o644,
        "logs/api.log": 0o664,
        "redis/appendonly.aof": 0o644,
        "notes.txt": 0o644,  # not labq's
        "run.sh": 0o755,  # not labq's
    }
    for name, perms in files.items():
        (data / name).write_text("x")
        (data / name).chmod(perms)
    for d in (data, data / "logs", data / "redis"):
        d.chmod(0o755)

    privacy.make_private(data)

    assert mode(data) == mode(data / "logs") == mode(data / "redis") == 0o700
    own = ["labq.db", "labq.db-wal", "labq.db.before-restore-20260101-000000", "redis.password"]
    for name in [*own, "logs/api.log", "redis/appendonly.aof"]:
        assert mode(data / name) == 0o600, name
    assert mode(data / "notes.txt") == 0o644 and mode(data / "run.sh") == 0o755


def test_redis_password_is_made_once_and_private(tmp_path):
    data = tmp_path / "fresh"
    assert privacy.redis_password(data) is None
    first = privacy.ensure_redis_password(data)
    assert len(first) == 64 and int(first, 16)
    assert mode(privacy.redis_password_path(data)) == 0o600
    assert privacy.ensure_redis_password(data) == first == privacy.redis_password(data)
