"""The lab's questions, answered per section from the measured data (Markdown bullet lines).
Each function is named for the section's question; a sentence is either computed from the runs or
marked as background (BACKGROUND)."""

import math

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure

from lab.report_stats import (
    Stat,
    compare,
    epochs_to_stat,
    mean_grad_norms,
    num,
    pct,
    val_loss_rises,
)

# Lines that state textbook background rather than a measurement start with this mark.
BACKGROUND = "*Background:*"


def _acc(sec, c) -> Stat:
    return sec.stat(c, "final_val_accuracy")


def _ranked(sec, metric="final_val_accuracy"):
    done = [c for c in sec.configs if sec.stat(c, metric).mean is not None]
    return sorted(done, key=lambda c: sec.stat(c, metric).mean, reverse=True)


def best_by(sec) -> list[str]:
    ranked = _ranked(sec)
    if not ranked:
        return ["- No configuration has finished yet."]
    best = ranked[0]
    lines = [f"- Best final validation accuracy: **{best['label']}** at {_acc(sec, best).pct()}."]
    if len(ranked) > 1:
        _, text = compare(_acc(sec, best), _acc(sec, ranked[1]))
        lines.append(f"- Margin over the runner-up ({ranked[1]['label']}): {text}.")
    return lines


def time_lines(sec) -> list[str]:
    rows = [
        (c["label"], sec.stat(c, "train_seconds"), sec.stat(c, "params"), sec.stat(c, "epochs_run"))
        for c in sec.configs
    ]
    text = "; ".join(
        f"{lbl}: {t.fmt('.1f')} s ({num(p.mean, ',.0f')} parameters)"
        for lbl, t, p, _ in rows
        if t.mean is not None
    )
    return [f"- Training time: {text}."] if text else []


def grad_figure(sec, title: str) -> tuple[list[str], dict[str, list[float]]]:
    """Per-layer kernel gradient norms on the fixed probe batch, after epoch 1, per configuration:
    the Markdown table and figure, and the mean norms per layer of each configuration's label."""
    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    lines = [
        "| configuration | gradient norm per layer after epoch 1 (input side -> output) "
        "| first / last layer |",
        "|---|---|---|",
    ]
    drawn = False
    measured: dict[str, list[float]] = {}
    for c in sec.configs:
        norms = mean_grad_norms(sec.runs(c), 0)
        if not norms:
            continue
        means = [s.mean for _, s in norms]
        measured[c["label"]] = means
        ax.plot(range(1, len(means) + 1), means, marker="o", label=c["label"])
        drawn = True
        ratio = means[0] / means[-1] if means[-1] else math.nan
        lines.append(
            f"| {c['label']} | "
            + ", ".join(f"{n}: {s.fmt('.3g')}" for n, s in norms)
            + f" | {ratio:.3g} |"
        )
    if not drawn:
        return ["- No gradient norms recorded yet."], measured
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = first hidden, last = output)")
    ax.set_ylabel("kernel gradient L2 norm (probe batch)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    sec.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(sec.out / "grad_norms.png", dpi=80, bbox_inches="tight")
    return [
        "",
        *lines,
        "",
        f"![gradient norms per layer]({sec.rel}/grad_norms.png)",
        "",
    ], measured


def width(sec, ctx):
    return best_by(sec) + time_lines(sec)


def two_layers(sec, ctx):
    lines = best_by(sec) + time_lines(sec) + ["", "Weight and bias shapes per layer:", ""]
    for c in sec.configs:
        detail = next(
            (sec.details[k["id"]] for k in sec.children(c) if k["id"] in sec.details), None
        )
        if detail and detail.get("layers"):
            shapes = "; ".join(
                f"{lyr['name']}: weights {tuple(lyr['kernel_shape'])}, biases {tuple(lyr['bias_shape'])}"
                for lyr in detail["layers"]
                if lyr["kernel_shape"]
            )
            lines.append(f"- {c['label']}: {shapes}")
    one = ctx.get(1)
    if one and _ranked(one) and _ranked(sec):
        a, b = _ranked(sec)[0], _ranked(one)[0]
        _, text = compare(_acc(sec, a), _acc(one, b))
        lines.append(
            f"- Best two-layer ({a['label']}) against best one-layer ({b['label']}, "
            f"section 1): {text}."
        )
    lines.append(f"- {BACKGROUND} the code change is one more `Dense` entry in `layers`.")
    return lines


def depth(sec, ctx):
    lines = best_by(sec)
    lines += [
        "",
        "| depth | configuration | parameters | train s | s per epoch | val acc |",
        "|---|---|---|---|---|---|",
    ]
    for c in sec.configs:
        depth = len(c["config"].get("layers") or [])
        t, e = sec.stat(c, "train_seconds"), sec.stat(c, "epochs_run")
        per = t.mean / e.mean if t.mean and e.mean else None
        lines.append(
            f"| {depth} | {c['label']} | {num(sec.stat(c, 'params').mean, ',.0f')} | "
            f"{t.fmt('.1f')} | {num(per, '.2f')} | {_acc(sec, c).pct()} |"
        )
    figure, norms = grad_figure(sec, "Gradient norms by depth (section 3)")
    lines += figure
    lines.append(
        f"- {BACKGROUND} a vanishing gradient shows as a first/last layer ratio far below 1 "
        "that falls as depth grows."
    )
    by_depth = [
        (len(c["config"].get("layers") or []), norms[c["label"]])
        for c in sec.configs
        if norms.get(c["label"]) and norms[c["label"]][-1]
    ]
    ratios = [means[0] / means[-1] for _, means in sorted(by_depth, key=lambda d: d[0])]
    if len(ratios) >= 2:
        falls = all(a > b for a, b in zip(ratios, ratios[1:], strict=False))
        lines.append(
            f"- Measured: the first/last ratio is {min(ratios):.2g} to {max(ratios):.2g} over "
            f"depths; it {'falls' if falls else 'does not fall'} steadily as depth grows."
        )
    return lines


def relu_vs_sigmoid(sec, ctx):
    lines = [
        "| units | ReLU val acc | sigmoid val acc | difference | epochs to 95% (ReLU / "
        "sigmoid) | epochs to 97% (ReLU / sigmoid) |",
        "|---|---|---|---|---|---|",
    ]
    for units in sorted({c["config"].get("layers.0.units") for c in sec.configs}):
        relu = sec.find(**{"layers.0.units": units, "layers.0.activation": "relu"})
        sig = sec.find(**{"layers.0.units": units, "layers.0.activation": "sigmoid"})
        if not relu or not sig:
            continue
        _, text = compare(_acc(sec, relu), _acc(sec, sig))
        reach = []
        for th in (0.95, 0.97):
            parts = []
            for c in (relu, sig):
                st, missed = epochs_to_stat(sec.runs(c), th)
                parts.append(st.fmt(".1f") if st.mean is not None else "not reached")
                if missed and st.mean is not None:
                    parts[-1] += f" ({missed} run(s) never)"
            reach.append(" / ".join(parts))
        lines.append(
            f"| {units} | {_acc(sec, relu).pct()} | "
            f"{_acc(sec, sig).pct()} | {text} | {reach[0]} | {reach[1]} |"
        )
    figure, norms = grad_figure(sec, "Gradient norms: sigmoid vs ReLU (section 4)")
    lines += figure
    lines.append(
        f"- {BACKGROUND} sigmoid's derivative is at most 0.25, so sigmoid layers pass back "
        "smaller gradients than ReLU layers."
    )
    ratios = []
    for units in sorted({c["config"].get("layers.0.units") for c in sec.configs}):
        relu = sec.find(**{"layers.0.units": units, "layers.0.activation": "relu"})
        sig = sec.find(**{"layers.0.units": units, "layers.0.activation": "sigmoid"})
        if relu and sig and norms.get(relu["label"]) and norms.get(sig["label"]):
            if norms[sig["label"]][0]:
                ratios.append(norms[relu["label"]][0] / norms[sig["label"]][0])
    if ratios:
        lines.append(
            f"- Measured: ReLU's first layer gets {min(ratios):.2g} to {max(ratios):.2g} times "
            "the gradient norm of sigmoid's, after epoch 1."
        )
    return lines


def tanh_mix(sec, ctx):
    lines = best_by(sec) + time_lines(sec)
    for number in (2, 3):
        other = ctx.get(number)
        if not other:
            continue
        for c in sec.configs:
            relu_layers = [{**lyr, "activation": "relu"} for lyr in c["config"].get("layers", [])]
            twin = other.find(layers=relu_layers)
            if twin:
                _, text = compare(_acc(sec, c), _acc(other, twin))
                lines.append(
                    f"- {c['label']} against all-ReLU {twin['label']} (section {number}): {text}."
                )
    lines.append(
        f"- {BACKGROUND} tanh is zero-centred but saturates (gradients shrink for large "
        "inputs); ReLU does not saturate for positive inputs but can leave units dead."
    )
    return lines


def _vs_batch128(sec, ctx, what: str) -> list[str]:
    lines = []
    one = ctx.get(1)
    for c in sec.configs:
        units = c["config"].get("layers.0.units")
        twin = one.find(**{"layers.0.units": units}) if one else None
        t = sec.stat(c, "train_seconds")
        line = (
            f"- {c['label']}: {_acc(sec, c).pct()} in {t.fmt('.1f')} s, "
            f"{sec.stat(c, 'epochs_run').fmt('.0f')} epochs"
        )
        if twin:
            _, text = compare(_acc(sec, c), _acc(one, twin))
            t1 = one.stat(twin, "train_seconds").mean
            ratio = f"{t.mean / t1:.2f}x the time" if t.mean and t1 else "time not comparable"
            line += f"; against {what} (section 1): accuracy {text}, {ratio}"
        lines.append(line + ".")
    return lines


def batch_10000(sec, ctx):
    base = sec.sweep["base"]
    n = base.get("train_samples") or 60000
    holdout = (base.get("validation") or {}) if isinstance(base.get("validation"), dict) else {}
    n -= holdout.get("holdout", 0)
    bs, epochs = base.get("batch_size", 128), base.get("epochs", 5)
    steps = -(-n // bs)
    return _vs_batch128(sec, ctx, "batch 128") + [
        f"- Measured from the spec: an epoch is {steps} optimizer steps at batch {bs:,} "
        f"instead of {-(-n // 128)} at batch 128, so {epochs} epochs make {steps * epochs} "
        "updates.",
        f"- {BACKGROUND} each large-batch step is cheaper per image, but few updates leave "
        "the model short of convergence; the accuracy against batch 128 above tests that.",
    ]


def batch_1(sec, ctx):
    lines = _vs_batch128(sec, ctx, "batch 128")
    for c in sec.configs:
        rises = [val_loss_rises(h) for h in sec.runs(c)]
        if rises:
            lines.append(
                f"- {c['label']}: validation loss rose in {Stat.of(rises).fmt('.1f')} of "
                f"{sec.stat(c, 'epochs_run').fmt('.0f')} epochs (noisy single-image steps)."
            )
    return lines


def _lr_lines(sec, ctx, label: str) -> list[str]:
    lines = _vs_batch128(sec, ctx, "learning rate 0.001")
    for c in sec.configs:
        for h in sec.runs(c)[:1]:
            accs = [r["val_accuracy"] for r in h if r.get("val_accuracy") is not None]
            if len(accs) >= 2:
                lines.append(
                    f"- {c['label']}: last-epoch change in validation accuracy "
                    f"{(accs[-1] - accs[-2]) * 100:+.2f} points; validation loss rose in "
                    f"{val_loss_rises(h)} epoch(s); best {pct(max(accs))} vs final "
                    f"{pct(accs[-1])}."
                )
    diverged = sum(c["diverged"] for c in sec.configs)
    runs = sum(len(c["children"]) for c in sec.configs)
    lines.append(
        f"- Divergence (loss became NaN or infinite, detected by the worker): "
        f"{diverged} of {runs} run(s) at {label}."
    )
    return lines


def small_learning_rate(sec, ctx):
    return _lr_lines(sec, ctx, "learning rate 0.0001") + [
        f"- {BACKGROUND} a still-rising last epoch means slow convergence, not a local minimum."
    ]


def large_learning_rate(sec, ctx):
    return _lr_lines(sec, ctx, "learning rate 0.02")


def regularization(sec, ctx):
    lines = ["| dropout | L2 | train acc | val acc | train - val gap |", "|---|---|---|---|---|"]
    for c in sec.configs:
        tr, va = sec.stat(c, "train_accuracy"), _acc(sec, c)
        gap = Stat.of(
            [
                (k["train_accuracy"] - k["final_val_accuracy"]) * 100
                for k in sec.children(c)
                if k["train_accuracy"] is not None and k["final_val_accuracy"] is not None
            ]
        )
        lines.append(
            f"| {c['config'].get('layers.1.rate')} | {c['config'].get('layers.0.l2')} | "
            f"{tr.pct()} | {va.pct()} | {gap.fmt('+.2f')} pts |"
        )
    return (
        lines
        + [
            "",
            f"- {BACKGROUND} training accuracy is measured with dropout active, so a negative "
            "gap means the regularizers hold the fitted network below what it scores at "
            "evaluation.",
        ]
        + best_by(sec)
    )


def optimal_model(sec, ctx):
    validation = sec.sweep["base"].get("validation")
    holdout = validation.get("holdout") if isinstance(validation, dict) else None
    where = f"the last {holdout:,} training images" if holdout else "the test set (no hold-out!)"
    lines = [
        f"Selection uses only the hold-out ({where}): the chosen configuration has the "
        "highest best-epoch hold-out accuracy, or, among those whose difference from it is "
        "within the seed-to-seed noise (needs repeats), the fastest. Its test accuracy is "
        "read once, after training.",
        "",
    ]
    ranked = _ranked(sec, "best_val_accuracy")
    if not ranked:
        return lines + ["- No configuration has finished yet."]
    top = sec.stat(ranked[0], "best_val_accuracy")
    tied = [
        c
        for c in ranked
        if c is ranked[0] or compare(top, sec.stat(c, "best_val_accuracy"))[0] is False
    ]
    chosen = min(tied, key=lambda c: sec.stat(c, "train_seconds").mean or math.inf)
    for c in sec.configs:
        mark = " **(chosen)**" if c is chosen else ""
        lines.append(
            f"- {c['label']}{mark}: hold-out {sec.stat(c, 'best_val_accuracy').pct()}"
            f", train {sec.stat(c, 'train_seconds').fmt('.1f')} s over "
            f"{sec.stat(c, 'epochs_run').fmt('.1f')} epochs; test "
            f"{sec.stat(c, 'test_accuracy').pct()}."
        )
    for c in sec.configs:
        if c is not chosen:
            _, text = compare(
                sec.stat(c, "best_val_accuracy"), sec.stat(chosen, "best_val_accuracy")
            )
            lines.append(
                f"- Ablation {c['label']} against the chosen one, on the hold-out: {text}."
            )
    test = sec.stat(chosen, "test_accuracy")
    verdict = "reaches" if test.mean is not None and test.mean >= 0.985 else "does NOT reach"
    lines.append(
        f"- Result: {chosen['label']} {verdict} 98.5% on the test set "
        f"({test.pct()}), in {sec.stat(chosen, 'train_seconds').fmt('.1f')} s."
    )
    ref = sec.preset.get("reference") or []
    if ref:
        pub = ref[0]["published"]
        lines.append(
            f"- The notebook published {pct(pub.get('best_val_accuracy'))} in "
            f"{num(pub.get('seconds'), '.1f')} s, choosing its best epoch on the test set "
            "itself, so that figure is optimistic. In the table above its published "
            "column is a test-set figure: compare it with the test column, not with the "
            "hold-out one."
        )
    return lines


SECTIONS = {
    1: width,
    2: two_layers,
    3: depth,
    4: relu_vs_sigmoid,
    5: tanh_mix,
    6: batch_10000,
    7: batch_1,
    8: small_learning_rate,
    9: large_learning_rate,
    10: regularization,
    12: optimal_model,
}


def answers(sec, ctx) -> list[str]:
    return SECTIONS[sec.preset["section"]](sec, ctx)
