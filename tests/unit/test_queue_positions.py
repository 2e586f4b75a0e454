"""The place in the queue that the runs list shows: one ranked query, the same numbers as a count."""

from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from db import repo
from db.models import Base, Experiment


def test_queue_positions_match_a_count_per_row():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    statuses = ["succeeded", "queued", "running", "queued", "cancelled", "queued", "queued"]
    with Session(engine) as s:
        s.add_all(
            [
                Experiment(name=f"r{i}", spec={}, status=st, epochs_total=1)
                for i, st in enumerate(statuses)
            ]
        )
        s.flush()
        ids = list(s.scalars(select(Experiment.id).order_by(Experiment.id)))
        got = repo.queue_positions(s, ids)
        expected = {
            i: s.scalar(
                select(func.count()).where(Experiment.status == "queued", Experiment.id <= i)
            )
            for i, st in zip(ids, statuses, strict=False)
            if st == "queued"
        }
        assert got == expected
        assert sorted(got.values()) == [1, 2, 3, 4]
        assert repo.queue_positions(s, [ids[-1]]) == {ids[-1]: 4}  # a page holding one row
        assert repo.queue_positions(s, []) == {}
