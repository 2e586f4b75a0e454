"""Mean ± std over repeats and how numbers are written, in one place for the API (a sweep's
per-configuration stats), the CLI's tables and the lab report."""

import math
import statistics
from collections.abc import Iterable


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """(mean, sample std, n) of the finite values; std is None below two values."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None, 0
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals)


def num(v: float | None, spec: str = ".4f") -> str:
    """`v` formatted by `spec`, or `-` when not measured."""
    return "-" if v is None else format(v, spec)


def plus_minus(mean: float | None, std: float | None, spec: str = ".4f", scale: float = 1.0) -> str:
    """`mean ± std` (just `mean` when std is unknown, `-` when nothing was measured)."""
    if mean is None:
        return "-"
    text = format(mean * scale, spec)
    return text if std is None else f"{text} ± {format(std * scale, spec)}"
