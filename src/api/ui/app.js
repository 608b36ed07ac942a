// Tripod's status page: logs in with Keystone (or takes a token), then every two seconds
// reads the admin status, volumes, snapshots and /metrics of the daemon that serves it and
// draws one row per volume. Everything is built with DOM calls (no HTML from data).
"use strict";

const POLL_MS = 2000;
const HISTORY = 60; // samples kept per chart
const state = { token: null, project: null, last: null, series: {}, progress: {} };

const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

async function api(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: Object.assign({ "Content-Type": "application/json" }, state.token ? { "X-Auth-Token": state.token } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const inner = json && Object.values(json)[0];
    const msg = (inner && inner.message) || text || r.statusText;
    const err = new Error(`${r.status}: ${msg}`);
    err.status = r.status;
    throw err;
  }
  return { json, text, headers: r.headers };
}

async function login(ev) {
  ev.preventDefault();
  $("login-error").textContent = "";
  try {
    let token = $("token").value.trim();
    let body;
    if (token) {
      const r = await fetch("/identity/v3/auth/tokens", { headers: { "X-Auth-Token": token, "X-Subject-Token": token } });
      if (!r.ok) throw new Error(`${r.status}: the token is not valid`);
      body = await r.json();
    } else {
      const r = await api("POST", "/identity/v3/auth/tokens", { auth: {
        identity: { methods: ["password"], password: { user: { name: $("user").value, domain: { name: "Default" }, password: $("password").value } } },
        scope: { project: { name: $("project").value, domain: { name: "Default" } } } } });
      token = r.headers.get("X-Subject-Token");
      body = r.json;
    }
    state.token = token;
    state.project = body.token.project.id;
    sessionStorage.setItem("tripod-ui", JSON.stringify({ token: state.token, project: state.project }));
    show(true);
  } catch (e) {
    state.token = null;
    $("login-error").textContent = `Log in failed (${e.message})`;
  }
}

function logout() {
  sessionStorage.removeItem("tripod-ui");
  state.token = null;
  show(false);
}

function show(dashboard) {
  $("login").hidden = dashboard;
  $("dashboard").hidden = !dashboard;
  $("logout").hidden = !dashboard;
  if (dashboard) refresh();
}

// Prometheus text -> {volume: {requests: {op: n}, bytes: {op: n}, secs: s, count: n}}
function parseMetrics(text) {
  const out = {};
  const re = /^(tripod_volume_[a-z_]+)\{([^}]*)\} ([0-9.eE+-]+)$/;
  for (const line of text.split("\n")) {
    const m = re.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const v = (out[labels.volume] ||= { requests: {}, bytes: {}, secs: 0, count: 0 });
    const n = Number(m[3]);
    if (m[1] === "tripod_volume_requests_total") v.requests[labels.op] = n;
    else if (m[1] === "tripod_volume_bytes_total") v.bytes[labels.op] = n;
    else if (m[1] === "tripod_volume_request_seconds_sum") v.secs += n;
    else if (m[1] === "tripod_volume_request_seconds_count") v.count += n;
  }
  return out;
}

function rates(prev, cur, dt) {
  if (!prev || !cur || dt <= 0) return null;
  const d = (a, b) => Math.max(0, (b || 0) - (a || 0));
  const bytes = d(prev.bytes.read, cur.bytes.read) + d(prev.bytes.write, cur.bytes.write);
  const count = d(prev.count, cur.count);
  return {
    read: d(prev.requests.read, cur.requests.read) / dt,
    write: d(prev.requests.write, cur.requests.write) / dt,
    mib: bytes / dt / 1048576,
    latencyMs: count ? (d(prev.secs, cur.secs) / count) * 1000 : 0,
  };
}

function spark(values, color) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${HISTORY} 28`);
  const max = Math.max(1e-9, ...values);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", values.map((v, i) => `${i + HISTORY - values.length},${27 - (v / max) * 26}`).join(" "));
  line.setAttribute("stroke", color);
  svg.append(line);
  return svg;
}

function eta(key, done, total) {
  const now = Date.now() / 1000;
  const p = state.progress[key];
  if (!p || done < p.done) { state.progress[key] = { done, t: now, rate: 0 }; return ""; }
  if (done > p.done) {
    const rate = (done - p.done) / (now - p.t);
    state.progress[key] = { done, t: now, rate: p.rate ? 0.7 * p.rate + 0.3 * rate : rate };
  }
  const r = state.progress[key].rate;
  if (!r) return "";
  const s = Math.round((total - done) / r);
  return s >= 60 ? `ETA ${Math.floor(s / 60)} min ${s % 60} s` : `ETA ${s} s`;
}

function replicaCell(vol, r) {
  if (!r) return el("td", { class: "muted" }, vol.open ? "?" : "closed");
  const td = el("td", { "data-health": r.health });
  const pct = r.total ? Math.floor((100 * r.done) / r.total) : 0;
  switch (r.health) {
    case "in_service": td.append(el("span", { class: "ok" }, "in service")); break;
    case "degraded": td.append(el("span", { class: "bad" }, r.needs_rebuild ? "degraded: needs a rebuild" : `degraded: ${r.missing_chunks} chunk(s) behind`)); break;
    case "resyncing":
    case "rebuilding": {
      td.append(el("span", { class: "warn" }, `${r.health} ${pct}%`));
      const bar = el("div", { class: "bar" }, el("div", { style: `width:${pct}%` }));
      td.append(bar, el("div", { class: "muted" }, `${r.done}/${r.total} chunks ${eta(vol.id + "/" + r.slot, r.done, r.total)}`));
      break;
    }
    default: td.append(r.health);
  }
  td.append(el("div", { class: "muted" }, r.location));
  return td;
}

function scrubCell(vol) {
  const s = vol.last_scrub;
  if (!s) return el("td", { class: "muted" }, "none since start");
  const when = (t) => new Date(t * 1000).toLocaleTimeString();
  if (s.state === "running") return el("td", { class: "warn" }, `running since ${when(s.started_at)}`);
  if (s.state === "failed") return el("td", { class: "bad" }, `failed: ${s.error}`);
  return el("td", { class: s.unrepairable ? "bad" : "" }, `${when(s.ended_at)}: ${s.blocks_checked} checked, ${s.bad} bad, ${s.repaired} repaired`);
}

async function act(what, method, path, body) {
  $("message").className = "";
  $("message").textContent = `${what}…`;
  try {
    await api(method, path, body);
    $("message").textContent = `${what}: started.`;
  } catch (e) {
    $("message").className = "error";
    $("message").textContent = `${what}: ${e.message}`;
  }
  refresh();
}

function actions(vol) {
  const base = `/v2/${state.project}/os-tripod-volumes/${vol.id}`;
  const td = el("td", { class: "actions" });
  td.append(el("button", { onclick: () => act(`Scrub of ${vol.name || vol.id}`, "POST", `${base}/scrub`, {}) }, "Scrub"));
  const slot = el("select", { "aria-label": "replica" }, ...[0, 1, 2].map((i) => el("option", { value: i }, `replica ${i}`)));
  const where = el("input", { placeholder: "/new/root or tcp://host:port", "aria-label": "new location" });
  td.append(el("div", {}, slot, where, el("button", { onclick: () => {
    if (!where.value.trim()) return;
    act(`Replacing replica ${slot.value} of ${vol.name || vol.id}`, "POST", `${base}/replicas/${slot.value}/replace`, { replace: { with: where.value.trim() } });
  } }, "Replace")));
  return td;
}

let busy = false;
// The QoS limits and durability a volume's type gives it now (from os-tripod-status).
function limitsText(vol) {
  const q = vol.qos || {};
  const mib = (b) => `${(b / 1048576).toFixed(1)} MiB/s`;
  const parts = [];
  for (const scope of ["total", "read", "write"]) {
    const label = scope === "total" ? "" : `${scope} `;
    const iops = q[`${scope}_iops_sec`];
    const burst = q[`${scope}_iops_sec_max`];
    if (iops) parts.push(`${label}${Math.round(iops)} IOPS${burst ? ` (burst ${Math.round(burst)})` : ""}`);
    const bytes = q[`${scope}_bytes_sec`];
    if (bytes) parts.push(`${label}${mib(bytes)}`);
  }
  if (vol.durability === "sync") parts.push("every write synced");
  return parts.length ? `limits: ${parts.join(" · ")}` : "no limits";
}

async function refresh() {
  if (!state.token || busy) return;
  busy = true;
  try {
    const p = `/v2/${state.project}`;
    const [status, vols, snaps, metrics] = await Promise.all([
      api("GET", `${p}/os-tripod-status`).then((r) => r.json),
      api("GET", `${p}/volumes/detail?all_tenants=1`).then((r) => r.json).catch(() => ({ volumes: [] })),
      api("GET", `${p}/snapshots/detail?all_tenants=1`).then((r) => r.json).catch(() => ({ snapshots: [] })),
      api("GET", "/metrics").then((r) => parseMetrics(r.text)).catch(() => ({})),
    ]);
    const now = Date.now() / 1000;
    const dt = state.last ? now - state.last.t : 0;
    const detail = Object.fromEntries((vols.volumes || []).map((v) => [v.id, v]));
    const snapsOf = {};
    for (const s of snaps.snapshots || []) (snapsOf[s.volume_id] ||= []).push(s);
    const tbody = $("volumes");
    tbody.replaceChildren();
    for (const vol of status.volumes) {
      const r = rates(state.last && state.last.metrics[vol.id], metrics[vol.id], dt);
      const series = (state.series[vol.id] ||= { read: [], write: [], mib: [], lat: [] });
      if (r) {
        for (const [k, v] of [["read", r.read], ["write", r.write], ["mib", r.mib], ["lat", r.latencyMs]]) {
          series[k].push(v);
          if (series[k].length > HISTORY) series[k].shift();
        }
      }
      const d = detail[vol.id] || {};
      const reps = {};
      for (const x of vol.replicas || []) reps[x.slot] = x;
      const attached = (d.attachments || []).length ? ` · attached` : "";
      const limits = limitsText(vol);
      const row = el("tr", { "data-volume": vol.id },
        el("td", {}, el("strong", {}, vol.name || "(no name)"), el("div", { class: "muted" }, vol.id),
          el("div", { class: "muted" }, `${vol.volume_type || d.volume_type || ""}${attached}`),
          el("div", { class: "muted", "data-limits": "" }, limits)),
        el("td", { class: vol.status.startsWith("error") ? "bad" : "" }, vol.status),
        el("td", {}, `${vol.size} GiB`),
        replicaCell(vol, reps[0]), replicaCell(vol, reps[1]), replicaCell(vol, reps[2]),
        el("td", {}, r ? `${r.read.toFixed(0)} / ${r.write.toFixed(0)}` : "–", spark(series.read, "#2f6fdb"), spark(series.write, "#c2410c")),
        el("td", {}, r ? r.mib.toFixed(1) : "–", spark(series.mib, "#7c3aed")),
        el("td", {}, r ? `${r.latencyMs.toFixed(2)} ms` : "–", spark(series.lat, "#0f766e")),
        el("td", {}, ...(snapsOf[vol.id] || []).map((s) => el("div", {}, `${s.name || s.id} (${s.status})`))),
        scrubCell(vol),
        vol.open ? actions(vol) : el("td", { class: "muted" }, "open it to act"),
      );
      if (vol.repairs) row.children[1].append(el("div", { class: "muted" }, `${vol.repairs} repair(s)`));
      tbody.append(row);
    }
    const s = status.summary || {};
    $("summary").textContent = `${s.volumes} volume(s), ${s.open} open, ${s.degraded} with a replica out of service`;
    $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
    state.last = { t: now, metrics };
  } catch (e) {
    if (e.status === 401) { logout(); $("login-error").textContent = "Your session ended; log in again."; }
    else { $("message").className = "error"; $("message").textContent = `Could not refresh: ${e.message}`; }
  } finally {
    busy = false;
  }
}

$("login").addEventListener("submit", login);
$("logout").addEventListener("click", logout);
const saved = JSON.parse(sessionStorage.getItem("tripod-ui") || "null");
if (saved) { state.token = saved.token; state.project = saved.project; show(true); } else show(false);
setInterval(refresh, POLL_MS);
