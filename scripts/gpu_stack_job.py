"""Part of scripts/gpu_check.sh: one job through a live embedded stack whose worker runs Keras on
JAX (LABQ_BACKEND=jax from the environment), the lab's 784-300-10 at batch 128 for 5 epochs.
Writes the finished experiment (status, device, timings, accuracy) as JSON to argv[1]; exit
status 1, with the stack's log, when the job does not succeed."""

import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

from cli.livestack import LiveStack

SPEC = {"name": "gpu-b128", "layers": [{"units": 300}], "epochs": 5, "batch_size": 128, "seed": 1}


def main(out: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="labq-gpu-") as tmp:
        stack = LiveStack(Path(tmp) / "stack")
        t0 = time.perf_counter()
        try:
            stack.start(timeout=60)
            print(f"stack up in {time.perf_counter() - t0:.1f}s", flush=True)
            r = httpx.post(f"{stack.url}/experiments", json=SPEC, timeout=30)
            r.raise_for_status()
            exp_id = r.json()["id"]
            t1 = time.perf_counter()
            while True:
                exp = httpx.get(f"{stack.url}/experiments/{exp_id}", timeout=30).json()
                if exp["status"] in ("succeeded", "failed", "cancelled"):
                    break
                if time.perf_counter() - t1 > 75:
                    raise TimeoutError(f"job still {exp['status']} after 75 s")
                time.sleep(0.2)
            exp["post_to_finished_seconds"] = time.perf_counter() - t1
            hist = httpx.get(f"{stack.url}/experiments/{exp_id}/history", timeout=30).json()
            exp["epoch_seconds"] = [h["seconds"] for h in hist]
            out.write_text(json.dumps(exp, indent=2))
            print(
                json.dumps(
                    {
                        k: exp.get(k)
                        for k in (
                            "status",
                            "device",
                            "worker",
                            "train_seconds",
                            "post_to_finished_seconds",
                            "test",
                        )
                    }
                )
            )
            if exp["status"] != "succeeded":
                print(stack.logs(), file=sys.stderr)
                return 1
            return 0
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc}\n{stack.logs()}", file=sys.stderr)
            return 1
        finally:
            stack.stop()


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
