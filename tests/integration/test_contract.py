"""The OpenAPI document is the contract: schemathesis's own CLI, every check, against a live
stack (real worker, Redis, SQLite). It generates valid and invalid requests for each operation,
then sequences of them (stateful links), and fails on a server error, an undocumented status, a
response that breaks its schema, a wrong Allow header, or a rule the schema does not state
(see schemathesis.toml). Accepted jobs are kept tiny by a low cost cap."""

import subprocess
import sys

import pytest

from tests.stack import ROOT, Stack

pytestmark = pytest.mark.integration


# About 3 minutes on a quiet 2-core machine; over 10 with the cores loaded 8-fold. The limits are
# a backstop for a hung run, not a speed target.
@pytest.mark.timeout(2400)
def test_schemathesis_run_finds_no_contract_failure(tmp_path):
    stack = Stack(tmp_path / "data", extra_env={"LABQ_MAX_JOB_FLOPS": "1e10"}).start()
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{stack.url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "5",
                "--seed",
                "1",
                "--no-color",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=2300,
        )
    finally:
        stack.stop()
    # A generated body can be megabytes long: cut long lines so the failures stay in view.
    lines = (out.stdout + out.stderr).splitlines()
    report = "\n".join(line if len(line) < 400 else line[:400] + " …" for line in lines)[-12000:]
    assert out.returncode == 0, report
    assert " passed" in out.stdout, report
