// Live page: schematic map, occupancy bars, grid charts, alert feed, device health; kept current by
// server-sent events from /api/v1/live/stream.
"use strict";
(function () {
  const CB = window.CB;
  const state = {
    lots: new Map(), // id -> {lot, occ, circle, fill, label}
    feeders: new Map(), // id -> {feeder, v, p, rect}
    series: new Map(), // start_ms -> Map(feeder -> {v, p})
    charts: { v: null, p: null },
    feederOrder: [],
  };
  const MAX_POINTS = 240;

  function occClass(occ) {
    if (occ === undefined || occ === null) return "s-none";
    if (occ >= 0.9) return "s-bad";
    if (occ >= 0.7) return "s-warn";
    return "s-ok";
  }

  function voltClass(f, v) {
    if (v === undefined || v === null) return "s-none";
    const nom = f.nominal_v || 230;
    return Math.abs(v - nom) <= 0.1 * nom ? "s-ok" : "s-bad";
  }

  function setClass(node, base, cls) {
    node.setAttribute("class", base + " " + cls);
  }

  function buildMap(reg) {
    const svg = document.getElementById("map");
    CB.clear(svg);
    for (const f of reg.feeders || []) {
      const x = 20 + f.x * 960, y = 20 + f.y * 560;
      const rect = CB.el("svg:rect", { x: x - 9, y: y - 9, width: 18, height: 18, class: "feeder s-none", id: "map-" + f.id });
      rect.appendChild(CB.el("svg:title", {}, f.name + " (" + f.id + ")"));
      svg.appendChild(rect);
      svg.appendChild(CB.el("svg:text", { x: x + 12, y: y + 4, class: "maplabel" }, f.name));
      state.feeders.set(f.id, { feeder: f, rect: rect });
      state.feederOrder.push(f.id);
    }
    const bars = document.getElementById("bars");
    CB.clear(bars);
    for (const l of reg.lots || []) {
      const x = 20 + l.x * 960, y = 20 + l.y * 560;
      const c = CB.el("svg:circle", { cx: x, cy: y, r: 10, class: "lot s-none", id: "map-" + l.id });
      const title = CB.el("svg:title", {}, l.name + " (" + l.id + ")");
      c.appendChild(title);
      svg.appendChild(c);
      svg.appendChild(CB.el("svg:text", { x: x + 13, y: y + 4, class: "maplabel" }, l.name));
      const fill = CB.el("div", { class: "fill s-none" });
      const label = CB.el("span", { class: "num", id: "occ-" + l.id }, "–");
      const row = CB.el("div", { class: "bar", "data-lot": l.id }, [
        CB.el("span", { title: l.id }, l.name),
        CB.el("div", { class: "track" }, [fill]),
        label,
      ]);
      bars.appendChild(row);
      state.lots.set(l.id, { lot: l, circle: c, title: title, fill: fill, label: label });
    }
  }

  function applyAggregate(a) {
    if (a.kind === "parking" && a.scope === "lot") {
      const s = state.lots.get(a.id);
      if (!s) return;
      const occ = a.metrics.occupancy_mean_ratio;
      s.occ = occ;
      const cls = occClass(occ);
      setClass(s.circle, "lot", cls);
      s.fill.setAttribute("class", "fill " + cls);
      s.fill.style.width = (occ === undefined ? 0 : Math.max(0, Math.min(1, occ)) * 100).toFixed(1) + "%";
      s.label.textContent = occ === undefined ? "–" : Math.round(occ * 100) + "%";
      s.title.textContent = s.lot.name + " (" + s.lot.id + "): " + s.label.textContent + " at " + CB.fmtTime(a.start_ms + a.window_ms);
    } else if (a.kind === "grid" && a.scope === "feeder") {
      const s = state.feeders.get(a.id);
      if (!s) return;
      const v = a.metrics.v_rms_mean_v, p = a.metrics.p_mean_kw;
      setClass(s.rect, "feeder", voltClass(s.feeder, v));
      let pt = state.series.get(a.start_ms);
      if (!pt) {
        pt = new Map();
        state.series.set(a.start_ms, pt);
      }
      pt.set(a.id, { v: v, p: p });
      while (state.series.size > MAX_POINTS) {
        state.series.delete(Math.min(...state.series.keys()));
      }
      scheduleCharts();
    }
    document.getElementById("last-update").textContent = CB.fmtTime(Date.now());
  }

  let chartTimer = null;
  function scheduleCharts() {
    if (chartTimer) return;
    chartTimer = setTimeout(() => {
      chartTimer = null;
      drawCharts();
    }, 200);
  }

  function drawCharts() {
    if (!window.uPlot || state.feederOrder.length === 0) return;
    const xs = [...state.series.keys()].sort((a, b) => a - b);
    for (const [key, field, unit] of [["v", "v", "V"], ["p", "p", "kW"]]) {
      const data = [xs.map((t) => t / 1000)];
      for (const id of state.feederOrder) {
        data.push(xs.map((t) => {
          const e = state.series.get(t).get(id);
          return e && e[field] !== undefined ? e[field] : null;
        }));
      }
      const host = document.getElementById("chart-" + key);
      if (!state.charts[key]) {
        const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
        const series = [{}].concat(state.feederOrder.map((id, i) => ({
          label: state.feeders.get(id).feeder.name, stroke: palette[i % palette.length], width: 1.5, spanGaps: true,
        })));
        state.charts[key] = new uPlot({
          width: Math.max(300, host.clientWidth || 440), height: 200, series: series,
          axes: [{}, { label: unit }], scales: { x: { time: true } },
        }, data, host);
      } else {
        state.charts[key].setData(data);
      }
    }
  }

  function alertItem(a) {
    return CB.el("li", {}, [
      CB.el("span", { class: a.state }, a.state === "raised" ? "RAISED " : "cleared "),
      CB.el("span", {}, CB.fmtTime(a.ts_ms) + " · " + a.alert + " · " + a.site + " (" + a.district + ") · "),
      CB.el("span", {}, a.message),
    ]);
  }

  function prependAlert(a) {
    const ul = document.getElementById("alerts");
    ul.insertBefore(alertItem(a), ul.firstChild);
    while (ul.children.length > 200) ul.removeChild(ul.lastChild);
  }

  async function loadHealth() {
    const box = document.getElementById("health");
    const r = await CB.get("/api/v1/devices/health");
    CB.clear(box);
    if (!r.ok) {
      CB.note(box, r.status === 403 ? "Device health is for operator roles (raw data)." : CB.errorText(r));
      return;
    }
    const devs = r.body.devices;
    const offline = devs.filter((d) => d.offline);
    let summary = devs.length + " devices, " + offline.length + " offline";
    if (r.body.clock === "data") {
      summary += " at the data clock " + CB.fmtTime(r.body.clock_ms) + " (the store holds a replay of history)";
    }
    box.appendChild(CB.el("p", { id: "health-summary" }, summary + "."));
    const shown = offline.concat(devs.filter((d) => !d.offline).sort((a, b) => (a.battery_pct ?? 101) - (b.battery_pct ?? 101))).slice(0, 50);
    box.appendChild(CB.table([
      { key: "device", label: "Device" },
      { key: "site", label: "Site" },
      { key: "last_seen_ms", label: "Last seen", fmt: CB.fmtTime },
      { key: "battery_pct", label: "Battery %", cls: "num", fmt: (v) => CB.fmtNum(v, 0) },
      { key: "offline", label: "State", fmt: (v) => (v ? "OFFLINE" : "ok") },
    ], shown, { id: "health-table" }));
  }

  function connectStream() {
    const st = document.getElementById("stream-state");
    const es = new EventSource("/api/v1/live/stream");
    es.onopen = () => { st.textContent = "connected"; };
    es.onerror = () => { st.textContent = "reconnecting"; };
    es.addEventListener("aggregate", (ev) => {
      try { applyAggregate(JSON.parse(ev.data)); } catch (e) { console.error(e); }
    });
    es.addEventListener("alert", (ev) => {
      try { prependAlert(JSON.parse(ev.data)); } catch (e) { console.error(e); }
    });
    es.addEventListener("lagged", (ev) => { st.textContent = "connected (missed " + ev.data + " events)"; });
  }

  async function main() {
    const me = await CB.session();
    if (!me) {
      CB.note(document.getElementById("bars"), "Sign in with an API token to see live data.");
      return;
    }
    const reg = await CB.get("/api/v1/registry");
    if (!reg.ok) {
      CB.note(document.getElementById("bars"), CB.errorText(reg), "error");
      return;
    }
    buildMap(reg.body);
    const snap = await CB.get("/api/v1/live");
    if (snap.ok) {
      for (const a of snap.body.lots || []) applyAggregate(a);
      for (const a of snap.body.feeders || []) applyAggregate(a);
      const alerts = snap.body.alerts || [];
      for (const a of alerts.slice().reverse()) prependAlert(a);
      if (snap.body.alerts === null) CB.note(document.getElementById("alerts"), "Alerts are not granted to this token.");
    } else {
      CB.note(document.getElementById("bars"), CB.errorText(snap), "error");
    }
    drawCharts();
    loadHealth();
    setInterval(loadHealth, 60000);
    connectStream();
  }

  document.addEventListener("DOMContentLoaded", main);
})();
