"""Print labq's requirements from pyproject.toml, one per line: the base dependencies plus those of
the extras named as arguments. The Dockerfile installs them (pinned by requirements.lock) in a
layer of their own, before the code is copied."""

import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
wanted = list(project["dependencies"])
for extra in sys.argv[1:]:
    wanted += project["optional-dependencies"][extra]
print("\n".join(wanted))
