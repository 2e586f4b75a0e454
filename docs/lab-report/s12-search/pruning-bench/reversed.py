"""bench.search_pruning's own run(), defaults, with the two searches in the other order
(no pruner first, then ASHA), to see whether the order (cold first search) decides the ratio."""

import argparse
import json
import tempfile
from pathlib import Path

from bench.search_pruning import run
from cli.livestack import LiveStack

args = argparse.Namespace(trials=8, epochs=6, train_samples=6000)
stack = LiveStack(Path(tempfile.mkdtemp()) / "data").start()
try:
    out = [run(stack, pr, args) for pr in ({"type": "none"}, {"type": "asha", "min_epochs": 1})]
finally:
    stack.stop()
print(json.dumps(out, indent=2))
