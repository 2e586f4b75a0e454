/* `/submit`: build an experiment spec, POST it to /experiments, show the API's 422 per field. */
"use strict";

(() => {
  const $ = id => document.getElementById(id);
  const e = labq.esc;
  const form = $("spec-form");
  const ACTIVATIONS = ["relu", "sigmoid", "tanh", "elu", "selu", "gelu", "linear"];
  const field = path => form.querySelector(`[data-field="${path}"]`);

  function layerRow(layer) {
    const row = document.createElement("div");
    row.className = "layer";
    row.dataset.type = layer.type || "dense";
    const dense = row.dataset.type === "dense";
    row.innerHTML = `<span class="idx"></span><span class="kind">${dense ? "dense" : "dropout"}</span>` + (dense
      ? `<label class="field">Units <input type="number" data-key="units" value="${e(layer.units ?? 100)}"></label>` +
        `<label class="field">Activation <select data-key="activation">${ACTIVATIONS.map(a =>
          `<option${a === (layer.activation || "relu") ? " selected" : ""}>${a}</option>`).join("")}</select></label>` +
        `<label class="field">L2 <input type="number" step="any" data-key="l2" value="${e(layer.l2 ?? 0)}"></label>`
      : `<label class="field">Rate <input type="number" step="any" data-key="rate" value="${e(layer.rate ?? 0.2)}"></label>` +
        "<span></span><span></span>") +
      `<span class="row"><button type="button" data-act="up" title="move up">↑</button>` +
      `<button type="button" data-act="down" title="move down">↓</button>` +
      `<button type="button" data-act="remove" title="remove">✕</button></span>`;
    return row;
  }

  /** Number the rows and point each input at its API field path (layers.N.key). */
  function renumber() {
    [...$("layers").children].forEach((row, i) => {
      row.querySelector(".idx").textContent = i;
      row.dataset.field = `layers.${i}`;
      row.querySelectorAll("[data-key]").forEach(el => { el.dataset.field = `layers.${i}.${el.dataset.key}`; });
    });
    preview();
  }

  function addLayer(layer) { $("layers").append(layerRow(layer)); renumber(); }

  const value = path => { const el = field(path); return el ? el.value.trim() : ""; };
  const number = path => value(path) === "" ? null : Number(value(path));

  /** The spec as the API takes it; blank optional fields are left out so their defaults apply. */
  function spec() {
    const out = {};
    if (value("name")) out.name = value("name");
    out.layers = [...$("layers").children].map((row, i) => row.dataset.type === "dense"
      ? { type: "dense", units: number(`layers.${i}.units`), activation: value(`layers.${i}.activation`),
          l2: number(`layers.${i}.l2`) }
      : { type: "dropout", rate: number(`layers.${i}.rate`) });
    out.optimizer = { name: value("optimizer.name"), learning_rate: number("optimizer.learning_rate") };
    if (value("optimizer.momentum") !== "") out.optimizer.momentum = number("optimizer.momentum");
    out.batch_size = number("batch_size");
    out.epochs = number("epochs");
    for (const key of ["train_samples", "seed"]) if (value(key) !== "") out[key] = number(key);
    out.validation = $("validation").value === "test" ? "test" : { holdout: number("validation.holdout") };
    if ($("use-es").checked) out.early_stopping = {
      monitor: value("early_stopping.monitor"), patience: number("early_stopping.patience"),
      min_delta: number("early_stopping.min_delta"),
      restore_best_weights: value("early_stopping.restore_best_weights") === "true" };
    if ($("use-rlr").checked) out.reduce_lr_on_plateau = {
      monitor: value("reduce_lr_on_plateau.monitor"), factor: number("reduce_lr_on_plateau.factor"),
      patience: number("reduce_lr_on_plateau.patience"), min_lr: number("reduce_lr_on_plateau.min_lr") };
    return out;
  }

  function preview() {
    const s = spec();
    const dense = s.layers.filter(l => l.type === "dense");
    const widths = [784, ...dense.map(l => l.units || 0), 10];
    let params = 0;
    for (let i = 1; i < widths.length; i++) params += widths[i - 1] * widths[i] + widths[i];
    const acts = [...new Set(dense.map(l => l.activation))].join("/");
    $("preview").textContent = `${widths.join("-")}${acts ? " " + acts : ""} · ${labq.num(params)} parameters`;
    $("json").textContent = JSON.stringify(s, null, 2);
    $("holdout-wrap").classList.toggle("hidden", $("validation").value === "test");
    $("es-fields").classList.toggle("hidden", !$("use-es").checked);
    $("rlr-fields").classList.toggle("hidden", !$("use-rlr").checked);
  }

  function clearErrors() {
    form.querySelectorAll(".invalid").forEach(el => el.classList.remove("invalid"));
    form.querySelectorAll(".error-msg.from-api").forEach(el => el.remove());
    $("banner").className = "banner hidden";
  }

  /** Put each 422 detail next to its input (or the nearest enclosing part of the form). */
  function showErrors(detail) {
    for (const d of detail) {
      let path = d.field, el = field(path);
      while (!el && path.includes(".")) { path = path.slice(0, path.lastIndexOf(".")); el = field(path); }
      if (!el) continue;
      el.classList.add("invalid");
      const msg = document.createElement("span");
      msg.className = "error-msg from-api";
      msg.dataset.for = d.field;
      msg.textContent = el.tagName === "INPUT" || el.tagName === "SELECT" ? d.msg : `${d.field}: ${d.msg}`;
      const host = el.closest("label.field") || el;
      host.append(msg);
    }
  }

  function banner(html, ok) {
    $("banner").className = "banner " + (ok ? "ok" : "bad");
    $("banner").innerHTML = html;
  }

  async function submit(ev) {
    ev.preventDefault();
    clearErrors();
    labq.setToken($("token").value.trim());
    $("submit").disabled = true;
    try {
      const made = await labq.api("/experiments", { json: spec() });
      banner(`Queued as <a href="/runs/${made.id}">#${made.id}</a> — follow it there or on the ` +
        `<a href="/">runs page</a>.${made.warning ? " " + e(made.warning) : ""}`, true);
      form.dataset.lastId = made.id;
    } catch (err) {
      const detail = err.body && Array.isArray(err.body.detail) ? err.body.detail : [];
      banner(e(labq.errorText(err)));
      showErrors(detail);
    } finally {
      $("submit").disabled = false;
    }
  }

  function fill(s) {
    field("name").value = s.name || "";
    $("layers").innerHTML = "";
    (s.layers || []).forEach(addLayer);
    const opt = s.optimizer || {};
    field("optimizer.name").value = opt.name || "adam";
    field("optimizer.learning_rate").value = opt.learning_rate ?? 0.001;
    field("optimizer.momentum").value = opt.momentum ?? "";
    for (const key of ["batch_size", "epochs", "train_samples", "seed"]) field(key).value = s[key] ?? "";
    $("validation").value = s.validation && s.validation.holdout ? "holdout" : "test";
    if (s.validation && s.validation.holdout) field("validation.holdout").value = s.validation.holdout;
    for (const [box, key] of [["use-es", "early_stopping"], ["use-rlr", "reduce_lr_on_plateau"]]) {
      $(box).checked = !!s[key];
      for (const [k, v] of Object.entries(s[key] || {})) { const el = field(`${key}.${k}`); if (el) el.value = String(v); }
    }
    preview();
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("token").value = labq.token();
    $("add-dense").onclick = () => addLayer({ type: "dense" });
    $("add-dropout").onclick = () => addLayer({ type: "dropout" });
    $("layers").addEventListener("click", ev => {
      const act = ev.target.dataset.act, row = ev.target.closest(".layer");
      if (!act || !row) return;
      if (act === "remove") row.remove();
      if (act === "up" && row.previousElementSibling) row.previousElementSibling.before(row);
      if (act === "down" && row.nextElementSibling) row.nextElementSibling.after(row);
      renumber();
    });
    form.addEventListener("input", preview);
    form.addEventListener("change", preview);
    form.addEventListener("submit", submit);
    addLayer({ type: "dense", units: 300, activation: "relu" });
    if (form.dataset.from) {
      try { fill((await labq.api(`/experiments/${form.dataset.from}`)).spec); }
      catch (err) { banner(e(`could not load run #${form.dataset.from}: ${labq.errorText(err)}`)); }
    }
  });
})();
