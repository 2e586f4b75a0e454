"""A write interrupted by the worker process's own shutdown (billiard's signal handler raises
SystemExit inside SQLAlchemy, which then raises its own error) is not the job's failure: the job
is left to its lease and resumes elsewhere, and nothing is written from the dying process."""

from sqlalchemy.exc import InvalidRequestError

from worker.job import Job, interrupted


def raised_during_exit() -> Exception:
    try:
        try:
            raise SystemExit(-241)
        except SystemExit:
            raise InvalidRequestError("Transaction is not on the active transaction list") from None
    except InvalidRequestError as exc:
        return exc


def raised_while_handling_exit() -> Exception:
    try:
        try:
            raise SystemExit(-241)
        except SystemExit:
            raise InvalidRequestError("Transaction is not on the active transaction list")  # noqa: B904
    except InvalidRequestError as exc:
        return exc


def test_an_error_raised_while_the_process_exits_is_an_interruption():
    assert interrupted(raised_while_handling_exit())
    assert not interrupted(raised_during_exit())  # `from None`: no exit in its chain
    assert not interrupted(ValueError("a real failure"))


def test_an_interrupted_job_is_left_to_its_lease_without_a_write():
    job = Job(123)  # no claim, no keeper, no database: a write would raise
    assert job.end_with(raised_while_handling_exit()) == "abandoned"
