/* `/search` and `/search/{id}`: searches from GET /searches (polled) and one search from
 * GET /searches/{id}, followed while it runs through its event stream (/searches/{id}/events,
 * polling while the stream is down). The charts are SVG drawn here from the same JSON that curl
 * users get. */
"use strict";

(() => {
  const $ = id => document.getElementById(id);
  const e = labq.esc;
  const root = $("search");
  const id = Number(root.dataset.id) || null;
  const ENDED = ["succeeded", "failed", "cancelled", "pruned"];
  const NS = "http://www.w3.org/2000/svg";
  const PAD = { l: 56, r: 16, t: 24, b: 34 };

  const fmt = metric => v => v == null ? "–" : metric.endsWith("accuracy") ? labq.pct(v) :
    metric === "train_seconds" ? labq.secs(v) : metric === "params" ? labq.num(v) : labq.loss(v);

  /** An <svg> filling `el`'s width, `h` high, with a `draw(add, w, h)` callback for its parts. */
  function svg(el, h, draw) {
    el.innerHTML = "";
    const w = Math.max(el.clientWidth, 320);
    const s = document.createElementNS(NS, "svg");
    s.setAttribute("width", w); s.setAttribute("height", h);
    s.setAttribute("viewBox", `0 0 ${w} ${h}`);
    const add = (tag, attrs, text) => {
      const n = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
      if (text != null) n.textContent = text;
      s.appendChild(n);
      return n;
    };
    draw(add, w, h);
    el.appendChild(s);
  }

  /** A linear scale of [lo, hi] onto [a, b], with a little room when lo == hi. */
  function scale(values, a, b) {
    let lo = Math.min(...values), hi = Math.max(...values);
    if (lo === hi) { lo -= Math.abs(lo) * 0.05 || 0.5; hi += Math.abs(hi) * 0.05 || 0.5; }
    const f = v => a + (v - lo) / (hi - lo) * (b - a);
    f.lo = lo; f.hi = hi;
    return f;
  }

  function axes(add, w, h, x, y, xLabel, yLabel, fx, fy, xInt = false) {
    const line = { stroke: "currentColor", "stroke-opacity": 0.35 };
    add("line", { x1: PAD.l, y1: h - PAD.b, x2: w - PAD.r, y2: h - PAD.b, ...line });
    add("line", { x1: PAD.l, y1: PAD.t, x2: PAD.l, y2: h - PAD.b, ...line });
    const small = { "font-size": 11, fill: "currentColor", "fill-opacity": 0.7 };
    const xs = new Set();
    for (let i = 0; i <= 4; i++) {
      const vy = y.lo + (y.hi - y.lo) * i / 4;
      add("text", { x: PAD.l - 6, y: y(vy) + 4, "text-anchor": "end", ...small }, fy(vy));
      let vx = x.lo + (x.hi - x.lo) * i / 4;
      if (xInt) vx = Math.round(vx);  // an axis of trial numbers: each integer once, in place
      const label = fx(vx);
      if (xs.has(label) || vx < x.lo || vx > x.hi) continue;
      xs.add(label);
      add("text", { x: x(vx), y: h - PAD.b + 14, "text-anchor": "middle", ...small }, label);
    }
    add("text", { x: (PAD.l + w - PAD.r) / 2, y: h - 4, "text-anchor": "middle", ...small }, xLabel);
    add("text", { x: 4, y: 12, ...small, "text-anchor": "start" }, yLabel);
  }

  function drawProgress(s) {
    const el = $("chart-progress");
    const metric = s.objective.metric, max = s.objective.direction === "maximize";
    const pts = s.trials.filter(t => t.value != null && ENDED.includes(t.status));
    if (!pts.length) { el.innerHTML = '<div class="empty">no trial has ended yet</div>'; return; }
    svg(el, 260, (add, w, h) => {
      const x = scale(pts.map(t => t.number), PAD.l + 8, w - PAD.r - 8);
      const y = scale(pts.map(t => t.value), h - PAD.b - 6, PAD.t + 6);
      axes(add, w, h, x, y, "trial", metric, v => String(v), fmt(metric), true);
      let best = null; const steps = [];
      for (const t of pts.slice().sort((a, b) => a.number - b.number)) {
        if (t.status !== "succeeded") continue;
        best = best == null ? t.value : max ? Math.max(best, t.value) : Math.min(best, t.value);
        steps.push([t.number, best]);
      }
      if (steps.length) {
        let d = `M${x(steps[0][0])},${y(steps[0][1])}`;
        for (const [n, v] of steps.slice(1)) d += `H${x(n)}V${y(v)}`;
        d += `H${w - PAD.r}`;
        add("path", { d, fill: "none", stroke: "currentColor", "stroke-width": 1.5, class: "best-line" });
      }
      for (const t of pts) {
        const cx = x(t.number), cy = y(t.value);
        if (t.status === "pruned") {
          add("path", { d: `M${cx - 4},${cy - 4}L${cx + 4},${cy + 4}M${cx - 4},${cy + 4}L${cx + 4},${cy - 4}`,
                        stroke: "#e4572e", "stroke-width": 2, class: "pt pruned" });
        } else {
          add("circle", { cx, cy, r: 4, fill: t.status === "succeeded" ? "#2f6fde" : "#7a8291",
                          class: "pt " + t.status }).appendChild(document.createElementNS(NS, "title"))
            .textContent = `#${t.number} ${t.label}: ${fmt(metric)(t.value)}`;
        }
      }
    });
  }

  function drawParallel(s) {
    const el = $("chart-parallel");
    const rows = s.trials.filter(t => t.value != null && ENDED.includes(t.status));
    if (!rows.length) { el.innerHTML = '<div class="empty">no trial has ended yet</div>'; return; }
    const space = s.spec.space, paths = Object.keys(space);
    const metric = s.objective.metric;
    const cols = paths.map(p => {
      const vals = rows.map(t => t.params[p]);
      if (space[p].type === "categorical") {
        const choices = [...new Set(vals.map(String))].sort();
        const n = Math.max(1, choices.length - 1);
        return { name: p.split(".").slice(-2).join("."), lo: choices[0], hi: choices[choices.length - 1],
                 at: vals.map(v => choices.length > 1 ? choices.indexOf(String(v)) / n : 0.5) };
      }
      const xs = vals.map(v => space[p].log && v > 0 ? Math.log10(v) : v);
      const lo = Math.min(...xs), hi = Math.max(...xs);
      return { name: p.split(".").slice(-2).join("."), lo: +Math.min(...vals).toPrecision(3),
               hi: +Math.max(...vals).toPrecision(3), at: xs.map(v => hi > lo ? (v - lo) / (hi - lo) : 0.5) };
    });
    const values = rows.map(t => t.value);
    const vlo = Math.min(...values), vhi = Math.max(...values);
    const share = values.map(v => vhi > vlo ? (v - vlo) / (vhi - vlo) : 0.5);
    cols.push({ name: metric, lo: fmt(metric)(vlo), hi: fmt(metric)(vhi), at: share });
    const good = s.objective.direction === "maximize" ? share : share.map(v => 1 - v);
    svg(el, 300, (add, w, h) => {
      const x = i => PAD.l + i * (w - PAD.l - PAD.r - 40) / Math.max(1, cols.length - 1);
      const y = v => h - PAD.b - 8 - v * (h - PAD.b - PAD.t - 28);
      const small = { "font-size": 11, fill: "currentColor", "fill-opacity": 0.75, "text-anchor": "middle" };
      cols.forEach((c, i) => {
        add("line", { x1: x(i), y1: y(0), x2: x(i), y2: y(1), stroke: "currentColor", "stroke-opacity": 0.35 });
        add("text", { x: x(i), y: h - 6, ...small }, c.name);
        add("text", { x: x(i), y: y(0) + 14, ...small }, String(c.lo));
        add("text", { x: x(i), y: y(1) - 6, ...small }, String(c.hi));
      });
      rows.forEach((t, r) => {
        const d = cols.map((c, i) => `${i ? "L" : "M"}${x(i)},${y(c.at[r])}`).join("");
        const hue = Math.round(220 - 180 * good[r]);  // blue (worst) to green-yellow (best)
        add("path", { d, fill: "none", stroke: `hsl(${hue} 70% 45%)`, "stroke-width": 1.6,
                      "stroke-opacity": 0.8, class: "trial-line" });
      });
    });
  }

  function drawPareto(s) {
    const panel = $("pareto-panel"), el = $("chart-pareto");
    if (!s.pareto_front) { panel.classList.add("hidden"); return; }
    panel.classList.remove("hidden");
    const [gx, gy] = s.objectives;
    const pts = s.trials.filter(t => t.values);
    if (!pts.length) { el.innerHTML = '<div class="empty">no trial has completed yet</div>'; return; }
    const front = new Set(s.pareto_front);
    svg(el, 280, (add, w, h) => {
      const x = scale(pts.map(t => t.values[0]), PAD.l + 8, w - PAD.r - 8);
      const y = scale(pts.map(t => t.values[1]), h - PAD.b - 6, PAD.t + 6);
      axes(add, w, h, x, y, `${gx.metric} (${gx.direction})`, `${gy.metric} (${gy.direction})`,
           fmt(gx.metric), fmt(gy.metric));
      const best = pts.filter(t => front.has(t.number)).sort((a, b) => a.values[0] - b.values[0]);
      if (best.length > 1) {
        add("path", { d: best.map((t, i) => `${i ? "L" : "M"}${x(t.values[0])},${y(t.values[1])}`).join(""),
                      fill: "none", stroke: "#e4572e", "stroke-width": 1.5 });
      }
      for (const t of pts) {
        const on = front.has(t.number);
        add("circle", { cx: x(t.values[0]), cy: y(t.values[1]), r: on ? 5 : 3.5,
                        fill: on ? "#e4572e" : "#7a8291", class: on ? "front" : "dominated" });
        if (on) add("text", { x: x(t.values[0]) + 6, y: y(t.values[1]) - 6, "font-size": 11,
                              fill: "currentColor" }, `#${t.number}`);
      }
    });
  }

  let importanceFor = null;
  async function drawImportance(s) {
    const done = s.trials.filter(t => t.status === "succeeded").length;
    if (done === importanceFor) return;
    importanceFor = done;
    const el = $("importance");
    try {
      const imp = await labq.api(`/searches/${id}/importance`);
      el.innerHTML = Object.entries(imp).map(([k, v]) =>
        `<div class="imp-row"><span class="mono small">${e(k)}</span>` +
        `<span class="imp-bar"><span style="width:${(100 * v).toFixed(1)}%"></span></span>` +
        `<span class="num small">${(100 * v).toFixed(1)}%</span></div>`).join("");
    } catch (err) {
      el.innerHTML = `<div class="empty">${e(err.status === 409 ? "needs two completed trials" : labq.errorText(err))}</div>`;
    }
  }

  function drawResult(s) {
    const r = s.result, el = $("result");
    if (!r) return;
    el.className = "";
    const metric = s.objective.metric, f = fmt(metric);
    if (r.pareto_front) {
      const goals = s.objectives.map(o => o.metric);
      const rows = (r.confirmed || []).map(p => `<tr><td>#${p.trial}${(r.confirmed_front || []).includes(p.trial) ? " ★" : ""}</td>` +
        goals.map((g, i) => `<td class="num">${p.means ? fmt(g)(p.means[i]) : "–"} ± ${p.stds && p.stds[i] != null ? fmt(g)(p.stds[i]) : "–"}</td>`).join("") +
        `<td class="num">${p.n}</td></tr>`).join("");
      el.innerHTML = `<p><b>Pareto front:</b> trials ${r.pareto_front.map(n => "#" + n).join(", ") || "none"}</p>` +
        (rows ? `<p><b>On new seeds</b> (★: the front of the means):</p><div class="table-wrap"><table id="confirmed"><thead><tr><th>Trial</th>` +
          goals.map(g => `<th class="num">${e(g)} mean ± std</th>`).join("") + `<th class="num">Seeds</th></tr></thead>` +
          `<tbody>${rows}</tbody></table></div>` : "") +
        `<p class="muted small">${e(r.rule)}</p>`;
      return;
    }
    if (r.winner == null) { el.innerHTML = `<p>No winner: ${e(r.reason || "")}</p>`; return; }
    const configs = (r.configs || []).map(c => `<tr class="${c.trial === r.winner ? "winner" : ""}">` +
      `<td>#${c.trial}${c.trial === r.winner ? " ★" : ""}</td><td class="num">${f(c.mean)} ± ${c.std == null ? "–" : f(c.std)}</td>` +
      `<td class="num">${c.n}</td><td class="num">${labq.num(c.params)}</td>` +
      `<td class="num">${c.p_vs_best == null ? "–" : c.p_vs_best.toFixed(3)}</td><td>${c.tied_with_best ? "tied" : ""}</td></tr>`).join("");
    el.innerHTML = `<dl class="kv" id="winner"><dt>winner</dt><dd>trial #${r.winner}</dd>` +
      `<dt>hold-out ${e(metric)}</dt><dd>${f(r.value)}</dd><dt>parameters</dt><dd>${labq.num(r.params)}</dd>` +
      `<dt>test accuracy</dt><dd id="test-accuracy">${labq.pct(r.test_accuracy)}</dd></dl>` +
      (configs ? `<div class="table-wrap"><table><thead><tr><th>Config</th><th class="num">Hold-out mean ± std</th>` +
        `<th class="num">Seeds</th><th class="num">Weights</th><th class="num">p vs best</th><th></th></tr></thead>` +
        `<tbody>${configs}</tbody></table></div>` : "") +
      `<p class="muted small">${e(r.rule)}. The test set is read for the winner only.</p>`;
  }

  function trialRows(s) {
    const f = fmt(s.objective.metric);
    const front = new Set(s.pareto_front || []);
    const bestNo = s.best ? s.best.number : null;
    const value = t => t.values ? t.values.map((v, i) => fmt(s.objectives[i].metric)(v)).join(" · ") : f(t.value);
    $("value-head").textContent = s.objectives.map(o => o.metric).join(" · ");
    $("trials").innerHTML = s.trials.length ? s.trials.slice().reverse().map(t =>
      `<tr data-id="${t.id}" data-status="${e(t.status)}"><td>#${t.number}${t.number === bestNo || front.has(t.number) ? " ★" : ""}</td>` +
      `<td><a href="/runs/${t.id}">run ${t.id}</a></td><td>${labq.badge(t.status)}</td>` +
      `<td class="mono small">${e(t.label)}</td><td>${labq.progress(t.epochs_done, t.epochs_total, t.status)}</td>` +
      `<td class="num">${value(t)}</td><td class="num">${labq.secs(t.train_seconds)}</td>` +
      `<td class="num">${labq.num(t.model_params)}</td></tr>`).join("") :
      '<tr><td colspan="8" class="empty">no trial yet</td></tr>';
    if (s.confirmation.length) {
      $("confirms").innerHTML = s.confirmation.map(t =>
        `<tr><td><a href="/runs/${t.id}">run ${t.id}</a></td><td>#${t.confirm_of}</td><td>${labq.badge(t.status)}</td>` +
        `<td>${labq.progress(t.epochs_done, t.epochs_total, t.status)}</td><td class="num">${f(t.value)}</td>` +
        `<td class="num">${labq.secs(t.train_seconds)}</td></tr>`).join("");
    }
  }

  function render(s) {
    document.title = `Search #${s.id} ${s.name} · labq`;
    $("name").textContent = s.name;
    $("status").innerHTML = `<span class="status ${e(s.status)}" id="search-status">${e(s.status)}</span>`;
    const counts = Object.entries(s.counts).map(([k, v]) => `${v} ${k}`).join(", ");
    $("summary").textContent = `${s.trials_asked}/${s.trials_target} trials asked` + (counts ? ` · ${counts}` : "") +
      (s.best ? ` · best ${fmt(s.objective.metric)(s.best.value)} (#${s.best.number})` : "");
    const ended = s.trials.filter(t => ENDED.includes(t.status)).length;
    $("progress").innerHTML = labq.progress(ended, s.trials_target, s.status === "done" ? "succeeded" : "running", true);
    const sp = s.spec;
    $("setup").textContent = `${s.objectives.map(o => `${o.direction} ${o.metric}`).join(", ")} · sampler ${sp.sampler} · ` +
      `pruner ${sp.pruner.type} · ${sp.parallel} at once` + (sp.confirm ? ` · confirm top ${sp.confirm.top} on ${sp.confirm.seeds} seeds` : "");
    const mine = who !== null && labq.mayChange(who, s.owner);
    $("cancel").classList.toggle("hidden", !mine || ["done", "cancelled", "cancelling"].includes(s.status));
    $("delete").classList.toggle("hidden", !mine);
    trialRows(s);
    drawProgress(s);
    drawParallel(s);
    drawPareto(s);
    drawResult(s);
    drawImportance(s);
  }

  function message(text, ok) {
    const m = $("message");
    m.className = "banner " + (ok ? "ok" : "bad");
    m.textContent = text;
  }

  async function refreshOne() {
    try {
      const s = await labq.api(`/searches/${id}`);
      render(s);
      return !["done", "cancelled"].includes(s.status);
    } catch (err) {
      message(labq.errorText(err));
      return true;
    }
  }

  async function refreshList() {
    try {
      const rows = await labq.api("/searches?limit=200");
      $("searches").innerHTML = rows.length ? rows.map(s =>
        `<tr data-id="${s.id}"><td>#${s.id}</td><td><a href="/search/${s.id}">${e(s.name)}</a></td>` +
        `<td>${labq.badge(s.status)}</td><td>${s.trials_asked}/${s.trials_target}</td>` +
        `<td class="small muted">${e(Object.entries(s.counts).map(([k, v]) => `${v} ${k}`).join(", "))}</td>` +
        `<td class="num">${s.best_value == null ? "–" : (+s.best_value).toPrecision(4)}</td><td>${labq.when(s.created_at)}</td></tr>`).join("") :
        '<tr><td colspan="7" class="empty">no search yet</td></tr>';
    } catch (err) {
      message(labq.errorText(err));
    }
  }

  /** A search to start from, in the list view's form: section 12's question at a small size. */
  const STARTER = {
    name: "width, dropout and learning rate",
    base: { layers: [{ units: 256 }, { type: "dropout", rate: 0.2 }], epochs: 10, batch_size: 128,
      validation: { holdout: 10000 } },
    space: {
      "layers.0.units": { type: "int", low: 64, high: 1024, log: true },
      "layers.1.rate": { type: "float", low: 0.0, high: 0.5 },
      "optimizer.learning_rate": { type: "float", low: 1e-4, high: 1e-2, log: true },
    },
    objective: { metric: "val_accuracy", direction: "maximize" },
    sampler: "tpe",
    pruner: { type: "asha", min_epochs: 1, reduction_factor: 3 },
    trials: 20,
    parallel: 2,
    confirm: { top: 2, seeds: 3 },
  };

  /** The list view's form: POST the JSON as written; a 422 names each field and rule. */
  function newSearchForm() {
    if (!labq.maySubmit(who)) return;
    $("new-search").classList.remove("hidden");
    const text = $("search-spec");
    text.value = JSON.stringify(STARTER, null, 2);
    $("submit-search").addEventListener("click", async () => {
      let body;
      try { body = JSON.parse(text.value); }
      catch (err) { message(`not JSON: ${err.message}`); return; }
      try {
        const made = await labq.api("/searches", { method: "POST", json: body });
        location.href = `/search/${made.id}`;
      } catch (err) { message(labq.errorText(err)); }
    });
  }

  let who = null;
  async function loop() {
    who = who || await labq.me();
    await refreshList();
    setTimeout(loop, 5000);
  }

  async function follow() {
    who = await labq.me();
    if (!(await refreshOne())) return;  // done or cancelled: nothing more will change
    const stream = labq.live(`/searches/${id}/events`, {
      search: render,
      end: () => { stream.close(); refreshOne(); },
    }, () => refreshOne().then(more => { if (!more) stream.close(); }), 2000);
  }

  if (id) {
    $("cancel").addEventListener("click", async () => {
      try {
        render(await labq.api(`/searches/${id}/cancel`, { method: "POST", json: {} }));
        message("cancelled: no new trial; running ones stop within an epoch", true);
      } catch (err) { message(labq.errorText(err)); }
    });
    $("delete").addEventListener("click", async () => {
      if (!confirm(`Delete search #${id} with every trial and confirmation run?`)) return;
      try { await labq.api(`/searches/${id}`, { method: "DELETE" }); location.href = "/search"; }
      catch (err) { message(labq.errorText(err)); }
    });
  }
  if (id) follow(); else loop().then(newSearchForm);
})();
