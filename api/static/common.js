/* Shared helpers of the labq pages: JSON calls to the public API, formatting, live streams. */
"use strict";

const labq = (() => {
  const TOKEN_KEY = "labq.token";

  function token() { return localStorage.getItem(TOKEN_KEY) || ""; }
  /** Kept in localStorage (sent as a header by fetch) and as the labq_token cookie, which the
   *  server accepts for reads only, so page loads and EventSource streams work behind auth. */
  function setToken(value) {
    const secure = location.protocol === "https:" ? "; Secure" : "";
    if (value) {
      localStorage.setItem(TOKEN_KEY, value);
      document.cookie = `labq_token=${encodeURIComponent(value)}; Path=/; SameSite=Strict; Max-Age=2592000${secure}`;
    } else {
      localStorage.removeItem(TOKEN_KEY);
      document.cookie = `labq_token=; Path=/; SameSite=Strict; Max-Age=0${secure}`;
    }
  }

  /** `target` if it is a path on this server, else "/" (the server's rule, checked again here:
   *  no backslash, whitespace or control character, no second slash, and the same origin once
   *  resolved), so a sign-in link can never send the browser to another site. */
  function sameOriginPath(target) {
    if (typeof target !== "string" || !target.startsWith("/") || target.startsWith("//") ||
        /[\\\s\u0000-\u001f\u007f-\u009f]/.test(target)) return "/";
    const url = new URL(target, location.origin);
    return url.origin === location.origin ? url.pathname + url.search + url.hash : "/";
  }

  /** fetch() a JSON endpoint; resolves to the parsed body, rejects with {status, body}.
   *  Every write is sent as JSON, with or without a body: the server refuses anything else. */
  async function api(path, options = {}) {
    const method = options.method || (options.json !== undefined ? "POST" : "GET");
    const headers = { Accept: "application/json", ...(options.headers || {}) };
    if (options.json !== undefined || !["GET", "HEAD"].includes(method)) {
      headers["Content-Type"] = "application/json";
    }
    if (token()) headers.Authorization = "Bearer " + token();
    const response = await fetch(path, {
      method, headers, body: options.json !== undefined ? JSON.stringify(options.json) : undefined,
    });
    let body = null;
    const text = await response.text();
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
    if (!response.ok) throw { status: response.status, body };
    return body;
  }

  /** The human sentence of an API error body ({message}, {detail: str} or {detail: [...]}). */
  function errorText(err) {
    const body = err && err.body;
    if (body && typeof body === "object") {
      if (body.message) return body.message;
      if (typeof body.detail === "string") return body.detail;
      if (Array.isArray(body.detail)) return body.detail.map(d => `${d.field}: ${d.msg}`).join("; ");
    }
    if (err && err.status === 401) return "this server needs an API token: sign in at /login";
    return err && err.status ? `HTTP ${err.status}` : String(err);
  }

  const esc = s => String(s ?? "").replace(/[&<>"']/g,
    c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const num = (v, digits = 0) => v == null ? "–" :
    Number(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const pct = v => v == null ? "–" : (100 * v).toFixed(2) + "%";
  const secs = v => v == null ? "–" : v < 100 ? v.toFixed(1) + " s" :
    v < 3600 ? (v / 60).toFixed(1) + " min" : (v / 3600).toFixed(2) + " h";
  const loss = v => v == null ? "–" : Number(v).toFixed(4);

  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso), ago = (Date.now() - d.getTime()) / 1000;
    if (ago < 60) return "just now";
    if (ago < 3600) return Math.floor(ago / 60) + " min ago";
    if (ago < 86400) return Math.floor(ago / 3600) + " h ago";
    return d.toISOString().slice(0, 16).replace("T", " ");
  }

  const badge = status => `<span class="status ${esc(status)}">${esc(status)}</span>`;

  function progress(done, total, status, big) {
    const share = total ? Math.min(1, done / total) : 0;
    return `<span class="progress${big ? " big" : ""}"><span class="bar ${esc(status)}">` +
      `<span style="width:${(share * 100).toFixed(1)}%"></span></span>` +
      `<span class="small muted">${done}/${total}</span></span>`;
  }

  /**
   * Follow a server-sent-event stream; while it is down, call `poll` every `pollMs` instead.
   * `handlers` maps event names to functions of the parsed data. Returns {close()}.
   */
  function live(url, handlers, poll, pollMs = 3000, onState = () => {}) {
    let source = null, timer = null, closed = false;
    const startPolling = () => {
      if (timer || closed || !poll) return;
      onState("polling");
      timer = setInterval(poll, pollMs);
      poll();
    };
    const stopPolling = () => { if (timer) { clearInterval(timer); timer = null; } };
    if (!("EventSource" in window)) { startPolling(); return { close() { closed = true; stopPolling(); } }; }
    source = new EventSource(url);
    source.onopen = () => { stopPolling(); onState("live"); };
    source.onerror = () => { if (!closed) startPolling(); };
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, ev => fn(JSON.parse(ev.data)));
    }
    return {
      close() { closed = true; stopPolling(); source.close(); onState("closed"); },
    };
  }

  /** Who this browser acts as (GET /me), asked once per page: {name, role, signed_in}. */
  let asked = null;
  function me() {
    asked = asked || api("/me").catch(() => ({ name: "", role: "viewer", signed_in: false }));
    return asked;
  }
  /** The server's rule (api/deps.may_act), to show only the actions it would allow: an admin
   *  changes everything, a member their own runs, sweeps and searches, a viewer nothing. */
  const mayChange = (who, owner) => who.role === "admin" || (who.role === "member" && who.name === owner);
  const maySubmit = who => who.role === "admin" || who.role === "member";

  async function refreshHealth() {
    const el = document.getElementById("health");
    if (!el) return;
    try {
      const h = await fetch("/health").then(r => r.json());
      const n = (h.workers || []).length;  // no details without the right to read: status only
      el.className = "pill " + (h.status === "ok" && (n || !h.workers) ? "ok" : "bad");
      el.innerHTML = `<span class="dot"></span>${h.status !== "ok" ? "degraded" :
        h.workers ? `${n} worker${n === 1 ? "" : "s"}` : "ok"}`;
      el.title = `database: ${h.database} · broker: ${h.broker}`;
    } catch (e) {
      el.className = "pill bad"; el.textContent = "API unreachable";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    me().then(who => document.querySelectorAll(".needs-submit")
      .forEach(el => el.classList.toggle("hidden", !maySubmit(who))));
    // After the first paint: the health check pings the workers and may take a moment.
    setTimeout(refreshHealth, 300);
    setInterval(refreshHealth, 15000);
  });

  return {
    api, sameOriginPath, errorText, esc, num, pct, secs, loss, when, badge, progress, live, token, setToken,
    me, mayChange, maySubmit,
  };
})();
