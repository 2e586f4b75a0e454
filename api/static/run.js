/* `/runs/{id}`: one run from GET /experiments/{id} and /history, live from its event stream. */
"use strict";

(() => {
  const $ = id => document.getElementById(id);
  const e = labq.esc;
  const id = Number($("run").dataset.id);
  const FINISHED = window.LABQ_FINISHED;  // from core/constants.py, via the page
  let exp = null, history = [], stream = null, filtersFor = null, who = null;

  const kv = rows => rows.filter(r => r).map(([k, v]) => `<dt>${e(k)}</dt><dd>${v}</dd>`).join("");

  function specRows(spec) {
    const layers = (spec.layers || []).map(l => l.type === "dropout" ? `dropout ${l.rate}` :
      `dense ${l.units} ${e(l.activation)}${l.l2 ? ` · L2 ${l.l2}` : ""}`);
    const opt = spec.optimizer || {};
    const cb = [];
    if (spec.early_stopping) {
      const s = spec.early_stopping;
      cb.push(`early stopping (${e(s.monitor)}, patience ${s.patience}${s.restore_best_weights ? ", restore best" : ""})`);
    }
    if (spec.reduce_lr_on_plateau) {
      const s = spec.reduce_lr_on_plateau;
      cb.push(`reduce LR on plateau (${e(s.monitor)}, ×${s.factor}, patience ${s.patience})`);
    }
    const val = spec.validation === "test" ? "test set (10,000)" :
      `hold-out: last ${labq.num(spec.validation.holdout)} training images`;
    return kv([
      ["layers", layers.length ? layers.map(e).join("<br>") : "none (softmax regression)"],
      ["output", "dense 10 softmax"],
      ["optimizer", `${e(opt.name)} · lr ${opt.learning_rate}` + (opt.momentum != null ? ` · momentum ${opt.momentum}` : "")],
      ["batch size", labq.num(spec.batch_size)], ["epochs", spec.epochs],
      ["training images", spec.train_samples ? labq.num(spec.train_samples) : "all 60,000"],
      ["validation", val], ["callbacks", cb.length ? cb.join("<br>") : "none"], ["seed", spec.seed],
    ]);
  }

  function renderExp(x) {
    exp = x;
    document.title = `#${x.id} ${x.name} · labq`;
    $("name").textContent = x.name;
    $("status").innerHTML = labq.badge(x.status) + (x.cancel_requested && x.status === "running"
      ? ' <span class="pill">cancel requested</span>' : "") + (x.diverged ? ' <span class="pill bad">diverged</span>' : "");
    $("arch").textContent = x.architecture;
    const waiting = x.status === "queued" && x.queue_position ? ` · #${x.queue_position} in queue` : "";
    $("progress").innerHTML = `<div class="row" style="margin-bottom:6px"><span class="muted small">epochs` +
      `${waiting}</span></div>` + labq.progress(x.epochs_done, x.epochs_total, x.status, true);
    const mine = who !== null && labq.mayChange(who, x.owner);
    $("cancel").classList.toggle("hidden", !mine || FINISHED.includes(x.status) || x.cancel_requested);
    // A run of a sweep or search is deleted with it (the API answers 409 otherwise).
    $("delete").classList.toggle("hidden", !mine || x.sweep_id != null || x.search_id != null);
    $("metrics").innerHTML = kv([
      ["val accuracy", labq.pct(x.val.accuracy)], ["val loss", labq.loss(x.val.loss)],
      ["best val accuracy", labq.pct(x.best_val_accuracy)], ["best val loss", labq.loss(x.best_val_loss)],
      ["train accuracy", labq.pct(x.train.accuracy)], ["train loss", labq.loss(x.train.loss)],
      ["test accuracy", labq.pct(x.test.accuracy)], ["test loss", labq.loss(x.test.loss)],
      ["parameters", labq.num(x.params)],
    ]);
    const perEpoch = x.train_seconds && x.epochs_done ? x.train_seconds / x.epochs_done : null;
    $("timings").innerHTML = kv([
      ["created", e(x.created_at.replace("T", " ").slice(0, 19))],
      ["started", x.started_at ? e(x.started_at.replace("T", " ").slice(0, 19)) : "–"],
      ["finished", x.finished_at ? e(x.finished_at.replace("T", " ").slice(0, 19)) : "–"],
      ["waited in queue", labq.secs(x.queue_seconds)], ["model build", labq.secs(x.build_seconds)],
      ["training", labq.secs(x.train_seconds)], ["per epoch", labq.secs(perEpoch)],
      ["owner", e(x.owner)], ["worker", e(x.worker || "–")], ["device", e(x.device || "–")], ["attempt", x.attempt],
      x.fused ? ["trained", `fused, one of ${x.fused} (seconds are its share)`] : null,
      x.sweep_id ? ["sweep", `<a href="/compare?sweep=${x.sweep_id}">#${x.sweep_id}</a>`] : null,
    ]);
    $("spec").innerHTML = specRows(x.spec);
    $("spec-json").textContent = JSON.stringify(x.spec, null, 2);
    $("layers").innerHTML = (x.layers || []).map(l =>
      `<tr><td class="mono">${e(l.name)}</td><td>${e(l.type)}</td>` +
      `<td class="mono">${l.kernel_shape ? "(" + l.kernel_shape.join(", ") + ")" : "–"}</td>` +
      `<td class="mono">${l.bias_shape ? "(" + l.bias_shape.join(", ") + ")" : "–"}</td>` +
      `<td class="num">${labq.num(l.params)}</td></tr>`).join("") ||
      '<tr><td colspan="5" class="empty">shapes are recorded when the model is built</td></tr>';
    $("error-panel").classList.toggle("hidden", !x.error);
    $("error").textContent = x.error || "";
    $("traceback").textContent = x.traceback || "";
    renderFilters();
    document.dispatchEvent(new CustomEvent("labq:run", { detail: x }));  // model.js
  }

  function renderFilters() {
    const key = `${exp.status}:${exp.attempt}`;
    if (filtersFor === key) return;
    filtersFor = key;
    if (!FINISHED.includes(exp.status)) {
      $("filters").innerHTML = '<div class="empty">drawn from the first layer\'s weights when training ends</div>';
      return;
    }
    const img = new Image();
    img.className = "filters-img";
    img.alt = `first-layer filters of run ${exp.id}`;
    img.onerror = () => { $("filters").innerHTML = '<div class="empty">no trained weights for this run</div>'; };
    img.src = `/experiments/${exp.id}/filters.png?attempt=${exp.attempt}`;
    $("filters").replaceChildren(img);
  }

  function renderHistory() {
    const x = history.map(h => h.epoch);
    const col = key => history.map(h => h[key]);
    charts.line($("chart-acc"), { x, percent: true, yLabel: "accuracy", series: [
      { label: "train", values: col("accuracy") }, { label: "validation", values: col("val_accuracy") }] });
    charts.line($("chart-loss"), { x, yLabel: "loss", series: [
      { label: "train", values: col("loss") }, { label: "validation", values: col("val_loss") }] });
    const layers = [...new Set(history.flatMap(h => Object.keys(h.grad_norms || {})))];
    if (!layers.length) {
      $("chart-grad").innerHTML = '<div class="empty">no gradient norms recorded for this run</div>';
    } else {
      charts.line($("chart-grad"), { x, log: true, yLabel: "‖∇W‖", series: layers.map(name => ({
        label: name, values: history.map(h => (h.grad_norms || {})[name] ?? null) })) });
    }
  }

  function onEpoch(row) {
    history = history.filter(h => h.epoch !== row.epoch).concat([row]).sort((a, b) => a.epoch - b.epoch);
    renderHistory();
  }

  async function load() {
    const [x, h] = await Promise.all([labq.api(`/experiments/${id}`), labq.api(`/experiments/${id}/history`)]);
    renderExp(x);
    history = h;
    renderHistory();
    return x;
  }

  function say(text, ok) {
    const m = $("message");
    m.className = "banner " + (ok ? "ok" : "bad");
    m.innerHTML = text;
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("rerun").onclick = async () => {
      try {
        const made = await labq.api("/experiments", { json: exp.spec });
        location.href = `/runs/${made.id}`;
      } catch (err) { say(e(labq.errorText(err))); }
    };
    who = await labq.me();
    $("delete").onclick = async () => {
      if (!confirm(`Delete run #${id} with its history, figures, model and checkpoints?`)) return;
      try { await labq.api(`/experiments/${id}`, { method: "DELETE" }); location.href = "/"; }
      catch (err) { say(e(labq.errorText(err))); }
    };
    $("cancel").onclick = async () => {
      try { renderExp(await labq.api(`/experiments/${id}/cancel`, { method: "POST" })); }
      catch (err) { say(e(labq.errorText(err))); }
    };
    let first;
    try { first = await load(); } catch (err) { say(e(labq.errorText(err))); return; }
    if (FINISHED.includes(first.status)) return;
    stream = labq.live(`/experiments/${id}/events`, {
      experiment: renderExp, history: h => { history = h; renderHistory(); }, epoch: onEpoch,
      end: () => { stream.close(); load(); },
    }, () => load().then(x => { if (FINISHED.includes(x.status)) stream.close(); }), 3000);
  });
})();
