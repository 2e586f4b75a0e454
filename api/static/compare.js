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
