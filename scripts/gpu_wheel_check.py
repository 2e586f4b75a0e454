"""Check a wheelhouse for the device machine: one wheel per name, each built for CPython 3.12 on
manylinux x86_64 (or pure), and every requirement of every wheel (markers read for Python 3.12 on
Linux, extras off) either carried or among the packages the device machine already has.

Usage: python scripts/gpu_wheel_check.py .whl   (exit status 1 and the gaps when it fails)
"""

import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

# The device machine's Python packages ('cuda' image, read 2026-11-17; KINDS.md of the device tool).
DEVICE = set(
    map(
        canonicalize_name,
        """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
        certifi charset-normalizer chex click cloudpickle colorama contourpy coverage cycler
        filelock flatbuffers fonttools frozenlist fsspec grpcio h11 h5py httpcore httpx idna
        imageio jax jaxlib jinja2 joblib kiwisolver markdown markdown-it-py markupsafe matplotlib
        mdurl ml-dtypes msgpack multidict mypy-extensions numpy opt-einsum packaging pillow pip
        pluggy portalocker prometheus-client propcache protobuf psutil pygments pyparsing
        python-dateutil pyyaml requests rich scipy setuptools shellingham six sortedcontainers
        tqdm typer typing-extensions urllib3 uvloop wheel wrapt zipp""".split(),
    )
)
ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}


def _abi3_up_to_312(tag) -> bool:
    """A stable-ABI wheel built for CPython 3.N, N <= 12, also runs on 3.12."""
    v = tag.interpreter.removeprefix("cp")
    return tag.abi == "abi3" and v.isdigit() and 30 <= int(v) <= 312


def main(folder: str) -> int:
    wheels = sorted(Path(folder).glob("*.whl"))
    carried: dict[str, str] = {}
    problems = []
    for w in wheels:
        name, version, _, tags = parse_wheel_filename(w.name)
        if name in carried:
            problems.append(f"two versions of {name}: {carried[name]} and {version}")
        carried[name] = str(version)
        ok = any(
            (t.interpreter in ("py3", "cp312", "py312") or _abi3_up_to_312(t))
            and ("x86_64" in t.platform or t.platform == "any")
            for t in tags
        )
        if not ok:
            problems.append(f"{w.name}: not for CPython 3.12 on x86_64 Linux")
    for w in wheels:
        with zipfile.ZipFile(w) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            msg = Parser().parsestr(z.read(meta).decode())
        for line in msg.get_all("Requires-Dist") or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(ENV):
                continue
            n = canonicalize_name(req.name)
            if n not in carried and n not in DEVICE:
                problems.append(f"{w.name} needs {req}: neither carried nor on the device")
    mib = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"{len(wheels)} wheels, {mib:.1f} MiB")
    for p in problems:
        print("gpu-check:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".whl"))
