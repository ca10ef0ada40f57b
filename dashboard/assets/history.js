// History page: one series over a range at a resolution, as a chart and a table, with CSV/JSON links.
// Data comes as `layout=columns` (one array per field and metric; null where a window lacks a metric):
// about a third of the row form's bytes, and the chart takes the arrays as they are.
"use strict";
(function () {
  const CB = window.CB;
  let chart = null;
  let last = null; // the columns body of the last query, or null

  function toLocalInput(ms) {
    const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
    return d.toISOString().slice(0, 16);
  }

  function params() {
    const [kind, scope, id] = document.getElementById("series").value.split("|");
    const from = new Date(document.getElementById("from").value).getTime();
    const to = new Date(document.getElementById("to").value).getTime();
    const p = new URLSearchParams({ kind: kind, scope: scope, id: id, from_ms: String(from), to_ms: String(to),
      resolution: document.getElementById("resolution").value });
    return p;
  }

  function updateLinks() {
    const p = params();
    p.set("format", "csv");
    document.getElementById("csv").setAttribute("href", "/api/v1/history?" + p.toString());
    p.set("format", "json");
    document.getElementById("json").setAttribute("href", "/api/v1/history?" + p.toString());
  }

  function draw(metric) {
    const host = document.getElementById("chart");
    if (chart) { chart.destroy(); chart = null; }
    CB.clear(host);
    if (!window.uPlot || !last || last.start_ms.length === 0 || !metric || !last.metrics[metric]) return;
    const data = [last.start_ms.map((ms) => ms / 1000), last.metrics[metric]];
    chart = new uPlot({ width: Math.max(320, host.clientWidth || 900), height: 280,
      series: [{}, { label: metric, stroke: "#1f77b4", width: 1.5 }], scales: { x: { time: true } } }, data, host);
  }

  // One table row per window; a row is the window's index into the column arrays.
  function table(body) {
    const box = document.getElementById("table");
    CB.clear(box);
    const names = Object.keys(body.metrics).sort();
    const cols = [{ key: (i) => body.start_ms[i], label: "Start (UTC)", fmt: CB.fmtTime },
      { key: (i) => body.count[i], label: "count", cls: "num" }]
      .concat(names.map((n) => ({ key: (i) => body.metrics[n][i], label: n, cls: "num",
        fmt: (v) => CB.fmtNum(v, 3) })));
    box.appendChild(CB.table(cols, body.start_ms.map((_, i) => i), { id: "history-table" }));
    return names;
  }

  async function run(ev) {
    if (ev) ev.preventDefault();
    updateLinks();
    const msg = document.getElementById("query-msg");
    msg.textContent = "";
    const p = params();
    p.set("layout", "columns");
    const r = await CB.get("/api/v1/history?" + p.toString());
    if (!r.ok) {
      msg.textContent = CB.errorText(r);
      last = null;
      draw(null);
      CB.clear(document.getElementById("table"));
      return;
    }
    last = r.body;
    const names = table(last);
    const sel = document.getElementById("metric");
    const prev = sel.value;
    CB.clear(sel);
    for (const n of names) sel.appendChild(CB.el("option", { value: n }, n));
    const preferred = names.includes(prev) ? prev : names.find((n) => n.includes("mean")) || names[0];
    if (preferred) sel.value = preferred;
    draw(sel.value);
    document.getElementById("query-msg").textContent = last.start_ms.length + " rows";
    document.getElementById("query-msg").setAttribute("class", "note");
  }

  async function main() {
    const me = await CB.session();
    if (!me) return;
    const reg = await CB.get("/api/v1/registry");
    const sel = document.getElementById("series");
    if (!reg.ok) {
      document.getElementById("query-msg").textContent = CB.errorText(reg);
      return;
    }
    const add = (kind, scope, id, label) => sel.appendChild(CB.el("option", { value: kind + "|" + scope + "|" + id }, label));
    const districts = new Map();
    for (const l of reg.body.lots) { add("parking", "lot", l.id, "Lot: " + l.name); districts.set("parking|" + l.district, l.district); }
    for (const f of reg.body.feeders) { add("grid", "feeder", f.id, "Feeder: " + f.name); districts.set("grid|" + f.district, f.district); }
    for (const [k, d] of districts) { const kind = k.split("|")[0]; add(kind, "district", d, "District " + d + " (" + kind + ")"); }
    for (const d of reg.body.devices || []) add(d.kind, "device", d.id, "Device: " + d.id);
    // Default range: the 24 h up to the newest stored window (a replay of historical data ends long
    // before the wall clock), or up to now when nothing is stored yet.
    let now = Date.now();
    const live = await CB.get("/api/v1/live");
    if (live.ok) {
      const ends = [].concat(live.body.lots || [], live.body.feeders || []).map((a) => a.start_ms + a.window_ms);
      if (ends.length > 0) now = Math.max(...ends);
    }
    const q = new URLSearchParams(location.search);
    document.getElementById("from").value = toLocalInput(Number(q.get("from_ms")) || now - 86400000);
    document.getElementById("to").value = toLocalInput(Number(q.get("to_ms")) || now);
    if (q.get("series")) sel.value = q.get("series");
    if (q.get("resolution")) document.getElementById("resolution").value = q.get("resolution");
    document.getElementById("query").addEventListener("submit", run);
    document.getElementById("metric").addEventListener("change", (e) => draw(e.target.value));
    for (const id of ["series", "from", "to", "resolution"]) document.getElementById(id).addEventListener("change", updateLinks);
    updateLinks();
    run();
  }

  document.addEventListener("DOMContentLoaded", main);
})();
