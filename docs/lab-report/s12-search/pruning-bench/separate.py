"""bench.search_pruning's own run(), defaults, each search in a fresh stack of its own
(so neither inherits the other's warm worker); order given on the command line."""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench.search_pruning import run
from cli.livestack import LiveStack

args = argparse.Namespace(trials=8, epochs=6, train_samples=6000)
out = []
for name in sys.argv[1:]:
    pr = {"type": "asha", "min_epochs": 1} if name == "asha" else {"type": "none"}
    stack = LiveStack(Path(tempfile.mkdtemp()) / "data").start()
    try:
        out.append(run(stack, pr, args))
    finally:
        stack.stop()
print(json.dumps(out, indent=2))
