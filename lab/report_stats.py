"""Numbers the lab report derives from a sweep: mean ± std, significance against run-to-run
noise, epochs to an accuracy, gradient norms per layer, and the published-vs-measured match."""

from dataclasses import dataclass

from scipy import stats

from core.stats import mean_std, num, plus_minus

__all__ = ["ALPHA", "Stat", "compare", "num", "pct"]

# The report's "within noise" rule: a difference between two configurations is a finding only
# when Welch's t-test (unequal variances, two-sided, on the seed-to-seed runs of each) gives
# p < ALPHA. With one run per configuration there is no spread to test against, and the report
# says so instead of ranking.
ALPHA = 0.05


@dataclass
class Stat:
    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values) -> "Stat":
        return cls(*mean_std(values))

    @classmethod
    def from_api(cls, d: dict) -> "Stat":
        return cls(d["mean"], d["std"], d["n"])

    def fmt(self, spec: str = ".4f", scale: float = 1.0) -> str:
        return plus_minus(self.mean, self.std, spec, scale)

    def pct(self, digits: int = 2) -> str:
        """As a percentage: `97.85 ± 0.12%`, or `-` when not measured."""
        return "-" if self.mean is None else self.fmt(f".{digits}f", 100) + "%"


def pct(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v * 100:.{digits}f}%"


def compare(
    a: Stat, b: Stat, what: str = "points", scale: float = 100.0
) -> tuple[bool | None, str]:
    """(significant?, sentence) for the difference a - b. None: no noise estimate (single runs)."""
    if a.mean is None or b.mean is None:
        return None, "not measured"
    diff = (a.mean - b.mean) * scale
    if a.std is None or b.std is None:
        return None, (
            f"{diff:+.2f} {what} (one run per configuration: the seed-to-seed noise "
            "is not measured; run with --repeats 3 to test it)"
        )
    if a.std == 0 and b.std == 0:
        return None, f"{diff:+.2f} {what} (identical repeats: the noise is not measured)"
    p = float(
        stats.ttest_ind_from_stats(
            a.mean, a.std, a.n, b.mean, b.std, b.n, equal_var=False, alternative="two-sided"
        ).pvalue
    )
    if p < ALPHA:
        return True, f"{diff:+.2f} {what}, beyond the noise (Welch's t-test, p = {p:.3f})"
    return (
        False,
        f"{diff:+.2f} {what}: NOT significant, within the noise (Welch's t-test, p = {p:.2f})",
    )


def epochs_to(history: list[dict], threshold: float, metric: str = "val_accuracy") -> int | None:
    """First epoch (1-based) whose `metric` reaches `threshold`; None if it never does."""
    for row in history:
        if row.get(metric) is not None and row[metric] >= threshold:
            return row["epoch"]
    return None


def epochs_to_stat(histories: list[list[dict]], threshold: float) -> tuple[Stat, int]:
    """Mean ± std epochs to `threshold` over the runs that reached it, and how many did not."""
    hits = [epochs_to(h, threshold) for h in histories]
    return Stat.of([h for h in hits if h is not None]), sum(h is None for h in hits)


def grad_norms(history: list[dict]) -> list[tuple[str, list[float]]]:
    """[(layer name, norm per epoch)] in layer order (input side first, output last)."""
    names: list[str] = []
    for row in history:
        for name in row.get("grad_norms") or {}:
            if name not in names:
                names.append(name)
    names.sort(key=_layer_order)
    return [
        (n, [(row.get("grad_norms") or {}).get(n, float("nan")) for row in history]) for n in names
    ]


def _layer_order(name: str) -> tuple[int, int]:
    if name == "output":
        return (1, 0)
    digits = "".join(ch for ch in name.split("_")[-1] if ch.isdigit())
    return (0, int(digits) if digits else 0)


def mean_grad_norms(histories: list[list[dict]], epoch_index: int = 0) -> list[tuple[str, Stat]]:
    """Per layer, the norm at one epoch (0: the first, -1: the last) over repeats."""
    per_layer: dict[str, list[float]] = {}
    for hist in histories:
        for name, norms in grad_norms(hist):
            if norms:
                per_layer.setdefault(name, []).append(norms[epoch_index])
    return sorted(((n, Stat.of(v)) for n, v in per_layer.items()), key=lambda x: _layer_order(x[0]))


def match_reference(config: dict, reference: list[dict]) -> dict | None:
    """The published numbers for a measured configuration, if the lab ran the same one."""
    for ref in reference:
        if ref["config"] == config:
            return ref["published"]
    return None


def val_loss_rises(history: list[dict]) -> int:
    """Epochs whose validation loss went up from the epoch before (instability)."""
    losses = [r.get("val_loss") for r in history]
    return sum(
        1
        for a, b in zip(losses, losses[1:], strict=False)
        if a is not None and b is not None and b > a
    )
