/* `/`: the queue and the runs, newest first, from GET /experiments; live from GET /events. */
"use strict";

(() => {
  const $ = id => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const state = {
    status: params.get("status") || "", name: params.get("name") || "",
    sweep_id: params.get("sweep_id") || "", owner: params.get("owner") || "", limit: Number(params.get("limit")) || 50,
    offset: Number(params.get("offset")) || 0, total: 0,
  };
  const selected = new Set();
  let firstRender = true, reloadTimer = null, loading = null;

  function query() {
    const q = new URLSearchParams();
    for (const key of ["status", "name", "sweep_id", "owner"]) if (state[key]) q.set(key, state[key]);
    q.set("limit", state.limit);
    if (state.offset) q.set("offset", state.offset);
    return q;
  }

  function rowHtml(r) {
    const e = labq.esc;
    const where = r.status === "queued" && r.queue_position != null
      ? `<span class="pill">#${r.queue_position} in queue</span>`
      : `<span class="muted small" title="${e(r.created_at)}">${labq.when(r.created_at)}</span>`;
    return `<td><input type="checkbox" class="pick" aria-label="select run ${r.id}"` +
      `${selected.has(r.id) ? " checked" : ""}></td>` +
      `<td class="muted mono">${r.id}</td><td class="st">${labq.badge(r.status)}</td>` +
      `<td><a href="/runs/${r.id}">${e(r.name)}</a></td><td>${e(r.owner)}</td>` +
      `<td class="mono">${e(r.architecture)}</td>` +
      `<td class="ep">${labq.progress(r.epochs_done, r.epochs_total, r.status)}</td>` +
      `<td class="num acc">${labq.pct(r.val_accuracy)}</td>` +
      `<td class="num">${labq.secs(r.train_seconds)}</td>` +
      `<td class="num">${labq.num(r.params)}</td><td>${where}</td>`;
  }

  function render(page) {
    const tbody = $("rows");
    state.total = page.total;
    if (!page.items.length) {
      tbody.innerHTML = `<tr><td colspan="11" class="empty">${state.total ? "no runs on this page" :
        "no runs match — submit one from <a href=\"/submit\">Submit</a> or with curl"}</td></tr>`;
    } else {
      tbody.innerHTML = page.items.map(r =>
        `<tr data-id="${r.id}" data-status="${labq.esc(r.status)}">${rowHtml(r)}</tr>`).join("");
    }
    const last = Math.min(state.offset + page.items.length, state.total);
    $("range").textContent = state.total
      ? `${labq.num(state.offset + 1)}–${labq.num(last)} of ${labq.num(state.total)}` : "";
    $("prev").disabled = state.offset === 0;
    $("next").disabled = last >= state.total;
    if (firstRender) { firstRender = false; performance.mark("labq:rows"); }
  }

  async function load() {
    if (loading) return loading;
    loading = labq.api("/experiments?" + query())
      .then(render)
      .catch(err => {
        $("rows").innerHTML = `<tr><td colspan="11" class="empty">${labq.esc(labq.errorText(err))}</td></tr>`;
      })
      .finally(() => { loading = null; });
    return loading;
  }

  function scheduleReload() {
    if (reloadTimer) return;
    reloadTimer = setTimeout(() => { reloadTimer = null; load(); }, 800);
  }

  /** A changed row from the stream: patch it in place, reload the page when it moved. */
  function onExperiment(r) {
    const tr = document.querySelector(`#rows tr[data-id="${r.id}"]`);
    if (tr && tr.dataset.status === r.status) {
      tr.innerHTML = rowHtml(r);
      return;
    }
    if (tr) { tr.dataset.status = r.status; tr.innerHTML = rowHtml(r); }
    scheduleReload();  // new run, a status change: order, filters and queue places may shift
  }

  function onQueue(q) {
    $("counts").textContent = `${labq.num(q.running)} running · ${labq.num(q.queued)} queued · ` +
      `${labq.num(q.total)} in all`;
  }

  function applyFilters() {
    state.status = $("f-status").value;
    state.name = $("f-name").value.trim();
    state.sweep_id = $("f-sweep").value;
    state.owner = $("f-owner").value;
    state.limit = Number($("f-limit").value);
    state.offset = 0;
    history.replaceState(null, "", "/?" + query());
    load();
  }

  async function loadSweeps() {
    try {
      const body = await labq.api("/sweeps?limit=200");
      const sweeps = Array.isArray(body) ? body : (body && body.items) || [];
      if (!sweeps.length && !state.sweep_id) return;
      $("f-sweep").insertAdjacentHTML("beforeend", sweeps.map(s =>
        `<option value="${s.id}">#${s.id} ${labq.esc(s.name)}</option>`).join(""));
      $("f-sweep").value = state.sweep_id;
      $("f-sweep-wrap").classList.remove("hidden");
    } catch (e) { /* no sweeps endpoint on this server: the filter stays hidden */ }
  }

  function updateSelection() {
    $("n-selected").textContent = selected.size;
    $("compare-selected").href = "/compare" + (selected.size ? "?ids=" + [...selected].join(",") : "");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("f-status").value = state.status;
    $("f-name").value = state.name;
    $("f-owner").value = state.owner === "me" ? "me" : "";
    $("f-limit").value = String(state.limit);
    load();
    let typing = null;
    $("f-name").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(applyFilters, 300); });
    for (const id of ["f-status", "f-owner", "f-sweep", "f-limit"]) $(id).addEventListener("change", applyFilters);
    $("prev").onclick = () => { state.offset = Math.max(0, state.offset - state.limit); applyPage(); };
    $("next").onclick = () => { state.offset += state.limit; applyPage(); };
    const applyPage = () => { history.replaceState(null, "", "/?" + query()); load(); };
    $("rows").addEventListener("change", ev => {
      if (!ev.target.classList.contains("pick")) return;
      const id = Number(ev.target.closest("tr").dataset.id);
      if (ev.target.checked) selected.add(id); else selected.delete(id);
      updateSelection();
    });
    const badge = $("live");
    labq.live("/events", { experiment: onExperiment, queue: onQueue, hello: () => load() }, load, 3000,
      mode => {
        badge.className = "pill" + (mode === "live" ? " ok" : "") + (mode === "closed" ? " hidden" : "");
        badge.innerHTML = mode === "live" ? '<span class="dot"></span>live' : "polling";
        badge.title = mode === "live" ? "server-sent events from GET /events" : "polling GET /experiments";
      });
    setTimeout(loadSweeps, 0);
  });
})();
