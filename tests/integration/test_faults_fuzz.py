"""Property-based fuzz of the live API from its own OpenAPI schema (schemathesis + hypothesis):
whatever a client sends, the answer is never a 5xx, and a rejected request stores nothing.

Bounded: a fixed number of examples per operation, derandomized, so the run is repeatable and
takes well under two minutes. A tiny cost cap keeps any accepted job to a few seconds of training.
Event streams are left out (they stream until the client leaves)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from sqlalchemy import create_engine, text

from api.main import create_app
from tests.stack import Stack

pytestmark = pytest.mark.integration

EXAMPLES = 15


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory):
    s = Stack(
        tmp_path_factory.mktemp("fuzz"),
        extra_env={"LABQ_MAX_JOB_FLOPS": "1e9", "LABQ_MAX_SWEEP_CHILDREN": "4"},
    )
    s.start()
    s.engine = create_engine(f"sqlite:///{s.data_dir / 'labq.db'}")
    yield s
    s.engine.dispose()
    s.stop()


# The schema the live API serves (built in-process from the same code, so tests can be
# parametrized per operation at collection time).
SCHEMA = schemathesis.openapi.from_dict(create_app().openapi())
OPERATIONS = [r.ok() for r in SCHEMA.exclude(path_regex="/events$").get_all_operations()]


def has_invalid_inputs(op) -> bool:
    """Negative cases exist only where some input has a type or bound to break (a free string
    path segment, or no input at all, has none)."""
    typed = [
        p
        for p in op.path_parameters
        if p.definition.get("schema", {}).get("type") not in (None, "string")
    ]
    return bool(len(op.body) or len(op.query) or typed)


CASES = [pytest.param(op, GenerationMode.POSITIVE, id=f"{op.label} positive") for op in OPERATIONS]
CASES += [
    pytest.param(op, GenerationMode.NEGATIVE, id=f"{op.label} negative")
    for op in OPERATIONS
    if has_invalid_inputs(op)
]


def stored(stack) -> tuple[int, int, int]:
    """Rows only a request creates (workers add epochs and artifacts, never these)."""
    with stack.engine.connect() as conn:
        return tuple(
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM experiments), (SELECT count(*) FROM sweeps), "
                    "(SELECT count(*) FROM tokens)"
                )
            ).one()
        )


@pytest.mark.parametrize(("operation", "mode"), CASES)
def test_api_never_errors_and_rejections_store_nothing(operation, mode, fuzz_stack):
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        before = stored(fuzz_stack)
        response = case.call(base_url=fuzz_stack.url, timeout=30)
        assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
        if response.status_code >= 400:
            assert stored(fuzz_stack) == before, (
                case.method,
                case.formatted_path,
                response.status_code,
            )

    check()
