"""Part of scripts/gpu_check.sh: the markdown table of the GPU check, from the JSON files it wrote
in the folder argv[1] (stack-job.json, bench-train.json, bench-service.json, bench-fused.json)."""

import json
import sys
from pathlib import Path


def load(folder: Path, name: str) -> dict:
    p = folder / name
    return json.loads(p.read_text()) if p.exists() else {}


def main(folder: Path) -> int:
    job, train, svc = (
        load(folder, n) for n in ("stack-job.json", "bench-train.json", "bench-service.json")
    )
    lines = [
        f"GPU check on {train.get('device', '?')}, Keras on {train.get('backend', '?')} "
        f"(jax {train.get('jax', '?')}, keras {train.get('keras', '?')}), "
        f"matmul {train.get('matmul_gflops', 0):.0f} GFLOP/s",
        "",
        "| case | model | batch | epochs | notebook model.fit s | labq s | speed-up | labq val_acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in train.get("rows", []):
        lines.append(
            f"| {r['case']} | {r['architecture']} | {r['batch_size']} | {r['epochs']} | "
            f"{r['notebook_seconds']:.2f} | {r['engine_seconds']:.2f} | "
            f"{r['speedup']:.2f}x | {r['engine_val_accuracy']:.4f} |"
        )
    lines.append("")
    if job:
        acc = (job.get("test") or {}).get("accuracy")
        lines.append(
            f"Through the queue (784-300-10, batch 128, 5 epochs): {job['status']} on "
            f"{job.get('device')}, train {job.get('train_seconds') or 0:.2f} s, POST to "
            f"finished {job['post_to_finished_seconds']:.2f} s, epochs "
            f"{', '.join(f'{s:.2f}' for s in job.get('epoch_seconds', []))} s, "
            f"test accuracy {acc}"
        )
    p = svc.get("pickup")
    if p and "post_to_running_ms_server" in p:
        lines.append(
            f"Pickup, warm JAX worker (median of {p['jobs']} tiny jobs): POST to running "
            f"{p['post_to_running_ms_server']:.0f} ms (server), "
            f"{p['post_to_running_ms_client']:.0f} ms (client); last epoch to succeeded "
            f"{p['last_epoch_to_succeeded_ms_client']:.0f} ms"
        )
    fused = load(folder, "bench-fused.json")
    ratio = fused.get("fused vs jax, one by one")
    if ratio:
        base = fused["sweep"]["base"]
        lines.append(
            f"Fused trials: 8 of 784-{base['layers'][0]['units']}-10 at batch "
            f"{base['batch_size']}, {base['epochs']} epochs, as one sweep vs one by one on the "
            f"same JAX worker: median {ratio['median']:.2f}x ({ratio['min']:.2f}-"
            f"{ratio['max']:.2f}x, {ratio['pairs']} pairs); seconds per pair "
            + "; ".join(
                f"{p['jax, one by one']['seconds']:.2f} vs {p['jax, fused sweep']['seconds']:.2f}"
                for p in fused["pairs"]
            )
        )
    errors = [str(svc[k]) for k in ("stack_errors",) if svc.get(k)]
    errors += [f"pickup: {p}" for p in [p] if p and "error" in p]
    print("\n".join(lines))
    for e in errors:
        print(f"\nerror: {e}")
    ok = bool(train.get("rows")) and job.get("status") == "succeeded" and not errors and p
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
