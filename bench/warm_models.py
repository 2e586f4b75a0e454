"""Warm vs cold tiny-job throughput, alternating pairs (BENCHMARKS.md, "Warm models"):
`python -m bench.warm_models PAIRS JOBS`. One stack per run, one worker process; the setting
LABQ_WARM_MODELS is 0 (cold) or 8 (warm) for the stack's processes."""

import os
import statistics
import sys

from bench.service import run_service


def main(pairs: int, jobs: int) -> None:
    ratios = []
    for pair in range(pairs):
        rate = {}
        for name, size in (("cold", "0"), ("warm", "8")):
            os.environ["LABQ_WARM_MODELS"] = size
            report = run_service(
                clients=0, duration=1, jobs=jobs, pickups=0, log=lambda *a: None, worker_counts=(1,)
            )
            rate[name] = report["throughput_1"]["jobs_per_s"]
        ratios.append(rate["warm"] / rate["cold"])
        print(f"pair {pair + 1}: cold {rate['cold']:.2f} jobs/s, warm {rate['warm']:.2f} jobs/s")
    print(
        f"warm / cold: median {statistics.median(ratios):.2f}x "
        f"({min(ratios):.2f}-{max(ratios):.2f}x, {pairs} pairs)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
