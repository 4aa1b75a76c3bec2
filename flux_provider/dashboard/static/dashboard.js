// The flux dashboard: the overview of every data set and one data set's page. It reads only the plugin's
// API (/flux/api/..., see /flux/openapi.json) and draws its charts with the bundled uPlot.
"use strict";

const HEALTH = ["failing", "throttled", "pinned", "paused", "running", "ok", "orphaned"];
const PAGE = 100;
const state = {sort: "health", order: "asc", q: "", owner: "", health: new Set(), offset: 0, hours: 24};
window.flux = {charts: {}, timeline: null, timings: {}};

// ------------------------------------------------------------------ theme: follow the Airflow UI around us
function applyTheme() {
  let dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  try {
    const chosen = localStorage.getItem("theme");  // Airflow's UI keeps "light", "dark" or "system" here
    if (chosen === "dark" || chosen === "light") dark = chosen === "dark";
    const outer = window.parent !== window && window.parent.document.documentElement;
    if (outer && (outer.classList.contains("dark") || outer.classList.contains("light"))) {
      dark = outer.classList.contains("dark");
    }
  } catch (e) { /* another origin: keep the system's choice */ }
  document.documentElement.classList.toggle("dark", dark);
}
applyTheme();
try {
  if (window.parent !== window) {
    new MutationObserver(() => { applyTheme(); if (current) renderDetail(current); })
      .observe(window.parent.document.documentElement, {attributes: true, attributeFilter: ["class"]});
  }
} catch (e) { /* another origin */ }

// ------------------------------------------------------------------ helpers
const $ = sel => document.querySelector(sel);
const css = name => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
function esc(v) {
  return String(v === null || v === undefined ? "–" : v).replace(/[&<>"']/g,
    c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
}
async function api(path, opts) {
  const r = await fetch(path, Object.assign({credentials: "same-origin",
    headers: {"Content-Type": "application/json"}}, opts || {}));
  if (!r.ok) {
    const text = await r.text();
    let detail = text;
    try { detail = JSON.parse(text).detail || text; } catch (e) { /* plain text */ }
    throw new Error(`${r.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`.slice(0, 300));
  }
  return r.json();
}
function age(iso) {
  if (!iso) return "–";
  const s = (Date.now() - new Date(iso).getTime()) / 1000, a = Math.abs(s);
  const text = a < 90 ? `${Math.round(a)} s` : a < 5400 ? `${Math.round(a / 60)} min` :
    a < 172800 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`;
  return s >= 0 ? `${text} ago` : `in ${text}`;
}
const when = iso => iso ? new Date(iso).toLocaleString([], {month: "2-digit", day: "2-digit", hour: "2-digit",
  minute: "2-digit"}) : "–";
const num = n => n === null || n === undefined ? "–" : Number(n).toLocaleString();
const dot = health => `<span class="dot" style="background:var(--${health})"></span>`;
const secs = s => s === null || s === undefined ? "–" : s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;

// ------------------------------------------------------------------ overview
function query() {
  const p = new URLSearchParams({sort: state.sort, order: state.order, offset: state.offset, limit: PAGE,
    hours: 24});
  if (state.q) p.set("q", state.q);
  if (state.owner) p.set("owner", state.owner);
  for (const h of state.health) p.append("health", h);
  return p;
}

let loading = 0;
async function loadOverview() {
  const mine = ++loading;
  let data;
  try { data = await api(`api/datasets?${query()}`); } catch (e) {
    $("#status").textContent = `cannot read the data sets (${e.message}): log in to Airflow`;
    return;
  }
  if (mine !== loading) return;  // a newer request is on its way
  renderOverview(data);
  api("api/fleet?hours=12").then(renderFleet, () => {});
  api("api/sources?hours=12").then(renderSources, () => {});
  if (!window.flux.timings.firstTable) {
    window.flux.timings.firstTable = performance.now();
    requestAnimationFrame(() => { window.flux.timings.firstPaint = performance.now(); });
  }
}

// The night's progress: runs landed, running, queued, failed, and what the unfinished ones wait for.
function renderFleet(f) {
  window.flux.fleet = f;
  if (!f.runs) { $("#fleet").textContent = ""; return; }
  const kinds = Object.entries(f.waits_by_kind).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${esc(k)} ${n}`);
  const last = f.landed_over_time.slice(-10).map(b => b.landed).join(" ");
  $("#fleet").innerHTML = `<b>last 12 h</b>: ${f.landed} landed · ${f.running} running · ${f.queued} queued · ` +
    `${f.failed} failed` + (kinds.length ? ` · waiting for: ${kinds.join(", ")}` : "") +
    (last ? ` · landed per minute (last 10): ${esc(last)}` : "") +
    (f.waiting.length ? `<details><summary>what each unfinished run waits for</summary><ul>` +
      f.waiting.slice(0, 100).map(w => `<li>${esc(w.dataset)}: ${esc(w.waits_for)}</li>`).join("") +
      `</ul></details>` : "");
}

// Each source: its budget shared by its data sets, what sized it, the server's state and what it cost.
function renderSources(found) {
  window.flux.sources = found;
  const shared = found.sources.filter(s => s.datasets.length > 1 || s.state);
  $("#sources").innerHTML = shared.map(s => {
    const st = s.state;
    const server = st ? ` · server capacity ${st.capacity ?? "?"}, ours ${st.ours_granted} + ${st.ours_waiting} waiting, ` +
      `others ${st.others_granted} + ${st.others_waiting} waiting` : "";
    return `<details class="source" data-source="${esc(s.source)}"><summary><b>source ${esc(s.source)}</b>: budget ` +
      `${s.budget}${s.pinned != null ? " (pinned)" : ""} of ${s.high} for ${s.datasets.length} data sets${server} · ` +
      `longest query ${s.longest_query.toFixed(1)} s · ${s.victims} victims wasted ${s.wasted_seconds.toFixed(0)} s` +
      `</summary><div>${esc(s.signal || "")}</div><table><thead><tr><th>data set</th><th>slots</th><th>weight</th>` +
      `<th>floor</th><th>longest query s</th><th>rows/s</th><th>victims</th><th>wasted s</th></tr></thead><tbody>` +
      s.datasets.map(d => `<tr><td>${esc(d.dataset)}</td><td>${d.slots ?? "-"}</td><td>${d.weight}</td>` +
        `<td>${d.floor}</td><td>${d.longest_query != null ? d.longest_query.toFixed(1) : "-"}</td>` +
        `<td>${d.rows_per_s ?? "-"}</td><td>${d.victims}</td><td>${d.wasted_seconds.toFixed(0)}</td></tr>`).join("") +
      `</tbody></table></details>`;
  }).join("");
}

function renderOverview(data) {
  window.flux.overview = data;
  $("#counts").innerHTML = HEALTH.filter(h => h !== "orphaned" || data.counts[h]).map(h =>
    `<button class="chip" data-health="${h}" aria-pressed="${state.health.has(h)}">${dot(h)}${h}
      <b>${data.counts[h] || 0}</b></button>`).join("");
  for (const chip of document.querySelectorAll("#counts .chip")) {
    chip.addEventListener("click", () => {
      const h = chip.dataset.health;
      state.health.has(h) ? state.health.delete(h) : state.health.add(h);
      state.offset = 0; loadOverview();
    });
  }
  for (const th of document.querySelectorAll("#table th")) {
    th.setAttribute("aria-sort", th.dataset.sort === state.sort ?
      (state.order === "asc" ? "ascending" : "descending") : "none");
  }
  $("#table tbody").innerHTML = data.items.map(row).join("") ||
    `<tr><td colspan="11" class="muted">no data set matches</td></tr>`;
  for (const tr of document.querySelectorAll("#table tr.ds")) {
    tr.addEventListener("click", ev => { if (!ev.target.closest("a")) location.hash = `#/${encodeURIComponent(tr.dataset.dataset)}`; });
  }
  const last = Math.min(data.offset + data.items.length, data.total);
  const c = data.controller;
  const period = c && c.period_seconds != null ?
    ` · controller period ${c.period_seconds.toFixed(2)} s (p95 ${(c.period_p95 ?? c.period_seconds).toFixed(2)} s)` : "";
  const h = data.host;
  const hostLimit = h ? ` · host limit ${h.slots} of ${h.bounds[1]}${h.pinned != null ? " (pinned)" : ""}` +
    `${h.mode === "off" ? " (off)" : ""}: ${h.signals || ""}` : "";
  $("#status").textContent = `${data.total ? data.offset + 1 : 0}–${last} of ${data.total} · updated ` +
    `${new Date(data.now).toLocaleTimeString()}${period}${hostLimit}`;
  $("#pager").innerHTML = data.total > data.limit ?
    `<button data-page="-1" ${data.offset === 0 ? "disabled" : ""}>previous</button>
     <button data-page="1" ${last >= data.total ? "disabled" : ""}>next</button>` : "";
  for (const b of document.querySelectorAll("#pager button")) {
    b.addEventListener("click", () => { state.offset = Math.max(0, state.offset + Number(b.dataset.page) * PAGE);
      loadOverview(); });
  }
}

function errorsText(errors) {
  const list = Object.entries(errors).sort((a, b) => b[1] - a[1]);
  return list.length ? list.map(([k, v]) => `${esc(k)} ${v}`).join(", ") : `<span class="muted">none</span>`;
}

function row(d) {
  const run = d.last_run;
  const slots = `${esc(d.slots)} <span class="muted">(${d.bounds[0]}–${d.bounds[1]})</span>` +
    (d.pinned !== null ? ` <span class="chip" title="pinned by a person">pinned</span>` : "");
  const rows = d.rows === null ? "–" :
    `${num(d.rows)} <span class="${d.reconciled ? "good" : d.reconciled === false ? "bad" : "muted"}"
      title="${d.reconciled ? "reconciled" : d.reconciled === false ? "NOT reconciled" : "not checked yet"}">` +
    `${d.reconciled ? "✓" : d.reconciled === false ? "✗" : "·"}</span>`;
  return `<tr class="ds" data-dataset="${esc(d.dataset)}" data-health="${d.health}">
    <td>${dot(d.health)} ${d.health}</td>
    <td><a href="#/${encodeURIComponent(d.dataset)}">${esc(d.dataset)}</a></td>
    <td>${esc(d.owner)}</td>
    <td>${run ? `<a href="${esc(run.url)}" target="_top" class="${run.state === "failed" ? "bad" : ""}">${esc(run.state)}</a>` : `<span class="muted">never ran</span>`}</td>
    <td title="${esc(run && run.start)}">${run ? age(run.start) : "–"}</td>
    <td title="${esc(d.next_run)}">${d.next_run ? age(d.next_run) : "–"}</td>
    <td class="num">${rows}</td>
    <td class="num">${slots}</td>
    <td class="num">${d.running}</td>
    <td class="num">${d.queued}</td>
    <td class="wrap">${errorsText(d.errors)}</td>
  </tr>`;
}

for (const th of document.querySelectorAll("#table th")) {
  th.querySelector("button").addEventListener("click", () => {
    const key = th.dataset.sort;
    state.order = state.sort === key && state.order === "asc" ? "desc" : "asc";
    state.sort = key; state.offset = 0; loadOverview();
  });
}
let typing;
for (const id of ["q", "owner"]) {
  $(`#${id}`).addEventListener("input", ev => {
    clearTimeout(typing);
    typing = setTimeout(() => { state[id] = ev.target.value.trim(); state.offset = 0; loadOverview(); }, 200);
  });
}

// ------------------------------------------------------------------ one data set
let current = null;

async function loadDetail(dataset) {
  const [d, t] = await Promise.all([
    api(`api/datasets/${encodeURIComponent(dataset)}`),
    api(`api/datasets/${encodeURIComponent(dataset)}/timeline?hours=${state.hours}`),
  ]);
  current = {d, t};
  window.flux.timeline = t;
  renderDetail(current);
}

function renderDetail({d, t}) {
  const el = $("#detail");
  el.innerHTML = `
    <a href="#/">← all data sets</a>
    <h1 data-role="title">${dot(d.health)} ${esc(d.dataset)} <span class="muted">(${d.health})</span></h1>
    <div class="facts">
      <span>owner <b>${esc(d.owner)}</b></span><span>DAG <a href="${esc(d.url)}" target="_top">${esc(d.dag_id)}</a></span>
      <span>slots <b data-role="slots">${esc(d.slots)}</b> (${d.bounds[0]}–${d.bounds[1]}, initial ${d.initial})</span>
      <span>${d.pinned !== null ? `<b>pinned</b> at ${d.pinned}` : "controller decides"}</span>
      <span>running <b>${d.running}</b></span><span>queued <b>${d.queued}</b></span>
      <span>next run <b>${d.next_run ? when(d.next_run) : "–"}</b></span>
      <span>errors (24 h) ${errorsText(d.errors)}</span>
    </div>
    <form class="limit" data-role="limit">
      <label>slots <input type="number" name="slots" min="0" max="10000" value="${esc(d.slots)}"></label>
      <input name="reason" maxlength="500" placeholder="reason (recorded)" aria-label="reason">
      <button type="submit" name="pin">Pin</button>
      <button type="button" name="set" title="set now; the controller goes on adapting">Set once</button>
      <button type="button" name="unpin" ${d.pinned === null ? "disabled" : ""}>Unpin</button>
      <span class="muted" data-role="msg"></span>
    </form>
    <h2>Slots, running and queued
      <select id="hours" aria-label="window">${[[1, "1 h"], [24, "24 h"], [168, "7 d"]].map(([h, l]) =>
        `<option value="${h}" ${h === state.hours ? "selected" : ""}>${l}</option>`).join("")}</select></h2>
    ${(t.windows || []).length ? `<div class="muted" data-role="windows">shaded: maintenance windows (${t.windows
      .map(w => `${when(new Date(w.start * 1000).toISOString())}–${when(new Date(w.end * 1000).toISOString())}${w.reason ? " " + esc(w.reason) : ""}`)
      .join(", ")})</div>` : ""}
    <div class="chart" id="slots-chart"><div class="tip" id="tip"></div></div>
    <div class="muted" data-role="cut-note">A cut never stops a running task: for a while after one, running
      can be above slots, until enough tasks end; the pool admits no new task until then.</div>
    <h2>Errors by class</h2>
    <div class="chart" id="errors-chart"></div>
    <h2>Limit changes</h2>
    <div class="scroll"><table data-role="changes"><thead><tr><th>time</th><th class="num">from</th>
      <th class="num">to</th><th>reason</th><th>by</th></tr></thead><tbody>
      ${t.changes.slice().reverse().map(c => `<tr><td>${when(c.at)}</td><td class="num">${esc(c.old)}</td>
        <td class="num">${esc(c.new)}</td><td class="wrap">${esc(c.reason)}</td><td>${esc(c.actor)}</td></tr>`).join("") ||
        `<tr><td colspan="5" class="muted">no change in the window</td></tr>`}</tbody></table></div>
    <h2>Runs</h2>
    <div class="scroll"><table data-role="runs"><thead><tr><th>run</th><th>state</th><th>started</th>
      <th class="num">exported</th><th class="num">uploaded</th><th class="num">staged</th><th class="num">target</th>
      <th>reconciled</th><th>stages (duration, log)</th></tr></thead><tbody>
      ${d.runs.map(runRow).join("") || `<tr><td colspan="9" class="muted">no runs yet</td></tr>`}</tbody></table></div>
    ${(d.partitions || []).length ? `<h2>Partitions</h2>
    <div class="scroll"><table data-role="partitions"><thead><tr><th>partition</th><th>state</th>
      <th class="num">rows</th><th class="num">exported</th><th class="num">runs</th><th>newest run</th></tr></thead><tbody>
      ${d.partitions.map(p => `<tr data-partition="${esc(p.key)}"><td>${esc(p.key)}</td>
        <td class="${stateClass(p.state)}">${esc(p.state)}</td>
        <td class="num">${num(p.rows)}</td><td class="num">${num(p.exported)}</td><td class="num">${p.runs}</td>
        <td><a href="${esc(p.url)}" target="_top">${esc(p.run_id)}</a> <span class="muted">${esc(p.run_type)}</span></td>
      </tr>`).join("")}</tbody></table></div>` : ""}
    <h2>Last errors</h2>
    <div class="scroll"><table data-role="errors"><thead><tr><th>time</th><th>task</th><th>try</th><th>class</th>
      <th>message</th><th>rule → action</th></tr></thead><tbody>
      ${d.last_errors.map(e => `<tr><td>${when(e.at)}</td>
        <td><a href="${esc(e.log_url)}" target="_top">${esc(e.task_id)}${e.map_index >= 0 ? `[${e.map_index}]` : ""}</a></td>
        <td class="num">${e.try_number}</td><td>${esc(e.class)}</td><td class="wrap">${esc(e.message)}</td>
        <td class="wrap">${e.rule ? `${esc(e.rule)} → ${esc(e.action)}` : `<span class="muted">no rule reached (see log)</span>`}</td>
      </tr>`).join("") || `<tr><td colspan="6" class="muted">no errors recorded</td></tr>`}</tbody></table></div>`;
  drawCharts(t);
  $("#hours").addEventListener("change", ev => { state.hours = Number(ev.target.value); loadDetail(d.dataset); });
  const form = el.querySelector("form.limit"), msg = form.querySelector("[data-role=msg]");
  const reason = () => form.reason.value.trim() || "from the dashboard";
  form.addEventListener("submit", ev => { ev.preventDefault();
    change(d.dataset, {slots: Number(form.slots.value), pin: true, reason: reason()}, msg); });
  form.querySelector("[name=set]").addEventListener("click", () =>
    change(d.dataset, {slots: Number(form.slots.value), pin: false, reason: reason()}, msg));
  form.querySelector("[name=unpin]").addEventListener("click", () =>
    change(d.dataset, {slots: null, pin: false, reason: reason()}, msg));
}

function stateClass(state) {
  return state === "failed" ? "bad" : state === "success" ? "good" : "";
}

function runRow(r) {
  const parts = r.parts.length ? `<div class="muted">parts: ${r.parts.map(p => `${esc(p.part)} ${num(p.rows)}`).join(", ")}</div>` : "";
  const stages = r.stages.map(s => `<a href="${esc(s.log_url)}" target="_top" title="${esc(s.state)}${s.hosts.length ? " on " + esc(s.hosts.join(", ")) : ""}"
    class="${/failed/.test(s.state) ? "bad" : ""}">${esc(s.task_id)}${s.parts ? ` ×${s.parts}` : ""}</a> ${secs(s.seconds)}`).join(" · ");
  return `<tr data-run="${esc(r.run_id)}"><td><a href="${esc(r.url)}" target="_top">${esc(r.run_id)}</a></td>
    <td class="${stateClass(r.state)}">${esc(r.state)}</td>
    <td>${when(r.start)}</td>
    <td class="num">${num(r.rows.exported)}</td><td class="num">${num(r.rows.uploaded)}</td>
    <td class="num">${num(r.rows.staged)}</td><td class="num">${num(r.rows.target)}</td>
    <td class="${r.reconciled ? "good" : r.reconciled === false ? "bad" : "muted"}">${r.reconciled === null ? "–" : r.reconciled ? "yes" : "NO"}</td>
    <td class="wrap">${stages}${parts}</td></tr>`;
}

async function change(dataset, body, msg) {
  msg.textContent = "saving…";
  try {
    await api(`api/datasets/${encodeURIComponent(dataset)}/limit`, {method: "POST", body: JSON.stringify(body)});
  } catch (e) {
    msg.textContent = `refused (${e.message})`;
    return;
  }
  await loadDetail(dataset);
  $("#detail [data-role=msg]").textContent = "saved";
}

// ------------------------------------------------------------------ charts (uPlot)
function drawCharts(t) {
  for (const chart of Object.values(window.flux.charts)) chart.destroy();
  const width = Math.max(480, $("#detail").clientWidth - 10);
  const axis = {stroke: css("--muted"), grid: {stroke: css("--line")}, ticks: {stroke: css("--line")}};
  const stepped = uPlot.paths.stepped({align: 1});
  const s = t.series;
  const markers = {hooks: {draw: [u => {  // maintenance windows shaded, a dashed line at every limit change
    const ctx = u.ctx; ctx.save();
    ctx.fillStyle = css("--paused") + "33";
    for (const w of t.windows || []) {
      const x0 = Math.max(u.valToPos(w.start, "x", true), u.bbox.left);
      const x1 = Math.min(u.valToPos(w.end, "x", true), u.bbox.left + u.bbox.width);
      if (x1 > x0) ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
    }
    ctx.strokeStyle = css("--pinned"); ctx.setLineDash([4, 3]); ctx.lineWidth = 1;
    for (const c of t.changes) {
      const x = Math.round(u.valToPos(c.t, "x", true));
      ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
    }
    ctx.restore();
  }], setCursor: [u => tip(u, t)]}};
  window.flux.charts.slots = new uPlot({
    width, height: 240, plugins: [markers],
    scales: {x: {time: true, range: [t.start, t.end]}, y: {range: (u, lo, hi) => [0, Math.max(hi + 1, t.bounds[1] + 1)]}},
    axes: [axis, Object.assign({label: "tries / slots"}, axis)],
    series: [{label: "time"},
      {label: "slots", stroke: css("--pinned"), width: 2, paths: stepped},
      {label: "running", stroke: css("--ok"), width: 1.5, fill: css("--ok") + "33", paths: stepped},
      {label: "queued", stroke: css("--throttled"), width: 1.5, paths: stepped}],
  }, [s.t, s.slots, s.running, s.queued], $("#slots-chart"));
  const classes = Object.keys(t.errors.classes).sort();
  const palette = ["--failing", "--throttled", "--pinned", "--running", "--paused", "--ok"];
  const bars = uPlot.paths.bars({size: [0.8, 40], align: 1});
  window.flux.charts.errors = new uPlot({
    width, height: 140,
    scales: {x: {time: true, range: [t.start, t.end]}, y: {range: (u, lo, hi) => [0, Math.max(hi, 1)]}},
    axes: [axis, Object.assign({label: "failed tries"}, axis)],
    series: [{label: "time"}, ...classes.map((c, i) => ({label: c, stroke: css(palette[i % palette.length]),
      fill: css(palette[i % palette.length]) + "aa", paths: bars, points: {show: false}}))],
  }, [t.errors.t, ...classes.map(c => t.errors.classes[c])], $("#errors-chart"));
}

function tip(u, t) {  // the limit changes near the cursor: what, why and who
  const box = $("#tip");
  if (u.cursor.left === undefined || u.cursor.left < 0) { box.style.display = "none"; return; }
  const near = t.changes.filter(c => Math.abs(u.valToPos(c.t, "x") - u.cursor.left) <= 6);
  if (!near.length) { box.style.display = "none"; return; }
  box.innerHTML = near.map(c => `<div><b>${esc(c.old)} → ${esc(c.new)}</b> ${when(c.at)}<br>${esc(c.reason)}
    <br><span class="muted">by ${esc(c.actor)}</span></div>`).join("<hr>");
  box.style.left = `${Math.min(u.cursor.left + u.bbox.left / devicePixelRatio + 12, u.width - 300)}px`;
  box.style.top = "8px"; box.style.display = "block";
}

// ------------------------------------------------------------------ routing and refresh
function route() {
  const name = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  $("#overview").hidden = !!name; $("#detail").hidden = !name;
  if (name) { loadDetail(name).catch(e => { $("#detail").innerHTML = `<a href="#/">← all data sets</a>
    <p class="bad">cannot read ${esc(name)}: ${esc(e.message)}</p>`; }); }
  else { current = null; loadOverview(); }
}
window.addEventListener("hashchange", route);
route();
setInterval(() => {
  const busy = document.activeElement && ["INPUT", "SELECT"].includes(document.activeElement.tagName);
  if (!busy && !document.hidden) { current ? loadDetail(current.d.dataset) : loadOverview(); }
}, 30000);
