/* The run page's model panels: a pad to draw a digit on, predicted live by the trained model
 * (POST /experiments/{id}/predict with the drawing as a PNG, sent as JSON like every write), the
 * confusion matrix from the run's `evaluation`, and its most confident mistakes (mistakes.png).
 * run.js announces each new state of the run with a `labq:run` event. */
"use strict";

(() => {
  const $ = id => document.getElementById(id);
  const e = labq.esc;
  const FINISHED = ["succeeded", "failed", "cancelled"];
  const MIN_GAP_MS = 150;  // between two predictions while drawing
  let run = null, shownFor = null;

  // --- where it errs ------------------------------------------------------------------------
  function confusionTable(set) {
    const m = set.confusion;
    const offMax = Math.max(1, ...m.flatMap((row, t) => row.filter((_, p) => p !== t)));
    const pct = v => v == null ? "–" : (100 * v).toFixed(1);
    const head = `<tr><th class="lead" title="rows: true digit; columns: predicted">true ╲ pred</th>` +
      m.map((_, p) => `<th>${p}</th>`).join("") + `<th title="recall: share of this digit found">recall %</th></tr>`;
    const rows = m.map((row, t) => `<tr data-digit="${t}"><th class="lead">${t}</th>` + row.map((n, p) => {
      const alpha = t === p ? 0.15 + 0.5 * (set.recall[t] ?? 0) : n ? 0.12 + 0.78 * n / offMax : 0;
      const rgb = t === p ? "31,143,78" : "200,55,45";
      return `<td class="${t === p ? "diag" : ""}" style="background:rgba(${rgb},${alpha.toFixed(3)})">${n || ""}</td>`;
    }).join("") + `<td>${pct(set.recall[t])}</td></tr>`).join("");
    const precision = `<tr><th class="lead" title="precision: share of this prediction that was right">precision %</th>` +
      set.precision.map(v => `<td>${pct(v)}</td>`).join("") + "<td></td></tr>";
    return `<table class="confusion" id="confusion-table"><thead>${head}</thead><tbody>${rows}${precision}</tbody></table>`;
  }

  function renderEvaluation(x) {
    const ev = x.evaluation;
    const select = $("eval-set");
    if (!ev) {
      $("confusion").innerHTML = `<div class="empty">${FINISHED.includes(x.status) ?
        "no evaluation was stored for this run" : "measured on the test set when the run ends"}</div>`;
      select.classList.add("hidden");
      $("eval-what").textContent = "";
      $("mistakes").innerHTML = `<div class="empty">${FINISHED.includes(x.status) ? "no mistakes stored for this run" :
        "the test images the model got wrong with the most confidence, when the run ends"}</div>`;
      return;
    }
    const sets = [["test", "test set (read once at the end)"]];
    if (ev.holdout) sets.push(["holdout", "hold-out (validation)"]);
    select.innerHTML = sets.map(([k, label]) => `<option value="${k}">${label}</option>`).join("");
    select.classList.toggle("hidden", sets.length < 2);
    const show = () => {
      const set = ev[select.value] || ev.test;
      $("eval-what").textContent = `${labq.num(set.images)} images · ${labq.pct(set.accuracy)} right` +
        (sets.length < 2 ? " · test set" : "");
      $("confusion").innerHTML = confusionTable(set);
    };
    select.onchange = show;
    show();
    const img = new Image();
    img.className = "filters-img";
    img.id = "mistakes-img";
    img.alt = `the test images run ${x.id} got wrong with the most confidence`;
    img.onerror = () => { $("mistakes").innerHTML = '<div class="empty">no mistakes stored for this run</div>'; };
    img.src = `/experiments/${x.id}/mistakes.png?attempt=${x.attempt}`;
    $("mistakes").replaceChildren(img);
  }

  // --- the model and the pad ----------------------------------------------------------------
  function renderModel(x) {
    const m = x.model;
    const usable = m && m.predict;
    $("try").classList.toggle("hidden", !usable);
    $("try-empty").classList.toggle("hidden", !!usable);
    if (!m) {
      $("try-empty").textContent = FINISHED.includes(x.status) ? "this run kept no model" :
        "the trained model can be tried once the run has finished";
      $("model-info").textContent = "";
      return;
    }
    if (!usable) $("try-empty").textContent = m.note || "this run kept no weights to predict with";
    const which = m.weights === "best" ? `best weights (epoch ${m.best_epoch}), put back by early stopping` :
      m.weights === "final" ? "final weights" : "";
    const size = m.bytes != null ? `${(m.bytes / 1e6).toFixed(2)} MB` : "";
    $("model-info").innerHTML = [which && e(which),
      m.stored ? `<a href="/experiments/${x.id}/model.keras" download>model.keras</a> ${e(size)}` :
        e(m.note || "model.keras not stored")].filter(Boolean).join(" · ");
  }

  const pad = $("pad"), ink = pad.getContext("2d");
  let drawing = false, inked = false, last = null, busy = false, again = false, sentAt = 0;

  function clearPad() {
    ink.fillStyle = "#fff";
    ink.fillRect(0, 0, pad.width, pad.height);
    inked = false;
    $("digit").textContent = "–";
    $("probs").innerHTML = "";
    $("try-msg").textContent = "";
    $("seen").getContext("2d").clearRect(0, 0, 28, 28);
  }

  function at(ev) {
    const r = pad.getBoundingClientRect();
    return [(ev.clientX - r.left) * pad.width / r.width, (ev.clientY - r.top) * pad.height / r.height];
  }

  function stroke(to) {
    ink.strokeStyle = "#000";
    ink.lineWidth = 26;  // about MNIST's stroke once a digit fills most of the pad
    ink.lineCap = ink.lineJoin = "round";
    ink.beginPath();
    ink.moveTo(...(last || to));
    ink.lineTo(...to);
    ink.stroke();
    last = to;
    inked = true;
  }

  function showPrediction(out) {
    const p = out.predictions[0];
    $("digit").textContent = p.digit;
    $("probs").innerHTML = p.probabilities.map((v, d) =>
      `<span class="${d === p.digit ? "top" : ""}" data-digit="${d}">${d}</span>` +
      `<span class="bar"><span style="width:${(100 * v).toFixed(1)}%"></span></span>` +
      `<span class="num">${(100 * v).toFixed(1)}%</span>`).join("");
    $("try-msg").textContent = "";
    if (out.input) {
      const seen = $("seen").getContext("2d"), img = seen.createImageData(28, 28);
      out.input.flat().forEach((v, i) => { img.data.set([v, v, v, 255], 4 * i); });
      seen.putImageData(img, 0, 0);
    }
  }

  /** One prediction in flight at a time; strokes drawn meanwhile are sent when it returns. */
  async function predict() {
    if (!inked || !run) return;
    if (busy) { again = true; return; }
    busy = true;
    const wait = sentAt + MIN_GAP_MS - Date.now();
    if (wait > 0) await new Promise(ok => setTimeout(ok, wait));
    sentAt = Date.now();
    try {
      showPrediction(await labq.api(`/experiments/${run.id}/predict`, { json: { png: pad.toDataURL("image/png") } }));
    } catch (err) {
      $("try-msg").textContent = labq.errorText(err);
    } finally {
      busy = false;
      if (again) { again = false; predict(); }
    }
  }

  pad.addEventListener("pointerdown", ev => {
    ev.preventDefault();
    pad.setPointerCapture(ev.pointerId);
    drawing = true;
    last = null;
    stroke(at(ev));
    predict();
  });
  pad.addEventListener("pointermove", ev => {
    if (!drawing) return;
    stroke(at(ev));
    predict();
  });
  for (const name of ["pointerup", "pointercancel"]) {
    pad.addEventListener(name, () => { if (drawing) { drawing = false; predict(); } });
  }
  $("clear").addEventListener("click", clearPad);
  clearPad();

  document.addEventListener("labq:run", ev => {
    const x = ev.detail;
    run = x;
    const key = `${x.status}:${x.attempt}:${x.model ? 1 : 0}`;
    if (shownFor === key) return;
    shownFor = key;
    renderModel(x);
    renderEvaluation(x);
  });
})();
