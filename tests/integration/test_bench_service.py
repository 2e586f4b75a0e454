"""`labq bench --service` end to end on a tiny scale: every section runs against one live stack
with two worker processes (the full bench runs one stack per worker count with the same code), and
the tables are printed. No timing is asserted."""

from rich.console import Console

from bench.service import run_service, service_tables


def test_service_bench_smoke():
    lines: list[str] = []
    report = run_service(
        clients=5,
        duration=2,
        jobs=3,
        pickups=2,
        worker_counts=(2,),
        log=lambda m: lines.append(str(m)),
    )
    assert "stack_errors" not in report, report["stack_errors"]
    for key in ("requests", "pickup", "load", "throughput_2"):
        assert "error" not in report[key], (key, report[key], lines)
    load = report["load"]
    assert load["requests"] > 0 and load["errors"] == 0, load
    assert load["training_during_load"], load
    t = report["throughput_2"]
    assert (t["succeeded"], t["failed"]) == (3, 0), t
    assert report["pickup"]["jobs"] == 2
    assert any("3/3 finished" in line for line in lines), lines  # the progress line

    console = Console(record=True, width=160)
    for table in service_tables(report):
        console.print(table)
    text = console.export_text()
    for title in ("single requests", "pickup", "API under load", "queue throughput"):
        assert title in text, text
