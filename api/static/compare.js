/* `/compare?ids=1,2,3` or `/compare?sweep=ID`: validation curves overlaid and a table of finals. */
"use strict";

(() => {
  const $ = id => document.getElementById(id);
  const e = labq.esc;
  const form = $("pick");
  const MAX = Number(form.dataset.max);
  const COLUMNS = [  // [key, how to read it, "max" or "min" is best, format]
    ["val", r => r.val.accuracy, "max", labq.pct],
    ["best", r => r.best_val_accuracy, "max", labq.pct],
    ["loss", r => r.val.loss, "min", labq.loss],
    ["test", r => r.test.accuracy, "max", labq.pct],
    ["time", r => r.train_seconds, "min", labq.secs],
    ["params", r => r.params, "min", v => labq.num(v)],
  ];

  function say(text) {
    $("message").className = text ? "banner bad" : "banner hidden";
    $("message").textContent = text || "";
  }

  function bestOf(runs) {
    const best = {};
    for (const [key, get, dir] of COLUMNS) {
      const values = runs.map(get).filter(v => v != null);
      if (values.length > 1) best[key] = dir === "max" ? Math.max(...values) : Math.min(...values);
    }
    return best;
  }

  function renderTable(runs) {
    const best = bestOf(runs);
    $("rows").innerHTML = runs.map((r, i) => {
      const cells = COLUMNS.map(([key, get, , fmt]) => {
        const v = get(r);
        return `<td class="num${v != null && v === best[key] ? " best" : ""}" data-col="${key}">${fmt(v)}</td>`;
      }).join("");
      return `<tr data-id="${r.id}"><td><span class="dot" style="color:${charts.color(i)}"></span></td>` +
        `<td class="muted mono">${r.id}</td><td><a href="/runs/${r.id}">${e(r.name)}</a></td>` +
        `<td class="mono">${e(r.architecture)}</td><td>${labq.badge(r.status)}</td>` +
        `<td>${labq.progress(r.epochs_done, r.epochs_total, r.status)}</td>${cells}</tr>`;
    }).join("") || '<tr><td colspan="12" class="empty">no runs</td></tr>';
  }

  /** Test accuracy of each digit (recall), one column per run, the best of each row starred. */
  function renderDigits(runs) {
    const withEval = runs.filter(r => r.evaluation);
    if (!withEval.length) {
      $("digits-head").innerHTML = "";
      $("digits-rows").innerHTML = '<tr><td class="empty">measured on the test set when each run ends</td></tr>';
      return;
    }
    $("digits-head").innerHTML = "<tr><th>Digit</th>" + runs.map((r, i) =>
      `<th class="num"><span class="dot" style="color:${charts.color(i)}"></span> #${r.id} ${e(r.name)}</th>`).join("") + "</tr>";
    const recall = (r, d) => r.evaluation ? r.evaluation.test.recall[d] : null;
    const cells = (get, fmt) => {
      const values = runs.map(get).filter(v => v != null);
      const best = values.length > 1 ? Math.max(...values) : null;
      return runs.map(r => {
        const v = get(r);
        return `<td class="num${v != null && v === best ? " best" : ""}">${fmt(v)}</td>`;
      }).join("");
    };
    // Two runs: the change from the first to the second, in percentage points.
    const pair = runs.length === 2;
    const delta = get => {
      const [a, b] = runs.map(get);
      if (a == null || b == null) return '<td class="num delta">–</td>';
      const pp = 100 * (b - a);
      return `<td class="num delta ${pp > 0 ? "up" : pp < 0 ? "down" : ""}">${pp > 0 ? "+" : ""}${pp.toFixed(2)}</td>`;
    };
    if (pair) {
      $("digits-head").firstElementChild.insertAdjacentHTML("beforeend",
        `<th class="num" title="second run minus first, in percentage points">Δ #${runs[1].id} − #${runs[0].id} (pp)</th>`);
    }
    const row = (key, label, get) => `<tr data-digit="${key}">${label}${cells(get, labq.pct)}${pair ? delta(get) : ""}</tr>`;
    const rows = Array.from({ length: 10 }, (_, d) => row(d, `<td class="mono">${d}</td>`, r => recall(r, d)));
    rows.push(row("all", '<td class="muted">all</td>', r => r.evaluation ? r.evaluation.test.accuracy : null));
    $("digits-rows").innerHTML = rows.join("");
  }

  function renderCharts(runs, histories) {
    const epochs = Math.max(0, ...histories.map(h => h.length ? h[h.length - 1].epoch : 0));
    const x = Array.from({ length: epochs }, (_, i) => i + 1);
    const column = (h, key) => x.map(ep => { const row = h.find(r => r.epoch === ep); return row ? row[key] : null; });
    const series = key => runs.map((r, i) => ({ label: `#${r.id} ${r.name}`, values: column(histories[i], key) }));
    charts.line($("chart-acc"), { x, series: series("val_accuracy"), percent: true, yLabel: "val accuracy", height: 280 });
    charts.line($("chart-loss"), { x, series: series("val_loss"), yLabel: "val loss", height: 280 });
  }

  async function idsOfSweep(sweep) {
    const page = await labq.api(`/experiments?sweep_id=${sweep}&limit=${MAX}`);
    if (page.total > MAX) say(`this sweep has ${page.total} runs; the ${MAX} newest are shown`);
    return page.items.map(r => r.id).reverse();
  }

  async function show(ids, sweep) {
    say("");
    if (sweep) ids = await idsOfSweep(sweep);
    $("what").textContent = sweep ? `sweep #${sweep} · ${ids.length} runs` : ids.length ? `${ids.length} runs` : "";
    if (!ids.length) {
      renderTable([]);
      renderCharts([], []);
      renderDigits([]);
      return;
    }
    const got = await Promise.allSettled(ids.map(id => Promise.all([
      labq.api(`/experiments/${id}`), labq.api(`/experiments/${id}/history`)])));
    const missing = ids.filter((id, i) => got[i].status === "rejected");
    if (missing.length) say(`not found: ${missing.map(i => "#" + i).join(", ")}`);
    const ok = got.filter(g => g.status === "fulfilled").map(g => g.value);
    const runs = ok.map(([r]) => r), histories = ok.map(([, h]) => h);
    renderTable(runs);
    renderCharts(runs, histories);
    renderDigits(runs);
  }

  async function loadSweeps(current) {
    try {
      const body = await labq.api("/sweeps?limit=200");
      const sweeps = Array.isArray(body) ? body : (body && body.items) || [];
      if (!sweeps.length) return;
      $("sweep").insertAdjacentHTML("beforeend", sweeps.map(s =>
        `<option value="${s.id}">#${s.id} ${e(s.name)}</option>`).join(""));
      $("sweep").value = current || "";
      $("sweep-wrap").classList.remove("hidden");
    } catch (err) { /* this server has no sweeps endpoint */ }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const ids = form.dataset.ids ? form.dataset.ids.split(",").map(Number) : [];
    const sweep = form.dataset.sweep;
    loadSweeps(sweep);
    form.addEventListener("submit", ev => {
      ev.preventDefault();
      const s = $("sweep").value, text = $("ids").value.replace(/\s+/g, "");
      if (s) { location.href = `/compare?sweep=${s}`; return; }
      if (text && !/^\d+(,\d+)*$/.test(text)) { say("run ids: numbers separated by commas, e.g. 12,14,15"); return; }
      location.href = "/compare" + (text ? `?ids=${text}` : "");
    });
    show(ids, sweep).catch(err => say(labq.errorText(err)));
  });
})();
