// Governance page: catalog, data-quality scorecard, dead letters, access log.
"use strict";
(function () {
  const CB = window.CB;

  async function catalog() {
    const box = document.getElementById("catalog");
    const r = await CB.get("/api/v1/catalog");
    CB.clear(box);
    if (!r.ok) { CB.note(box, CB.errorText(r), "error"); return; }
    box.appendChild(CB.table([
      { key: "dataset", label: "Dataset" },
      { key: "title", label: "Title" },
      { key: "owner", label: "Owner" },
      { key: "classification", label: "Class" },
      { key: "retention", label: "Retention" },
      { key: "update_frequency", label: "Updates" },
      { key: "schema", label: "Schema", fmt: (s) => s.map((f) => f[0] + " (" + f[1] + ")").join("; ") },
      { key: (d) => d, label: "Lineage", fmt: (d) => d.lineage_topics.join(", ") + " → " + d.lineage_operators.join(" → ") + " → " + d.lineage_table },
      { key: "roles", label: "Roles", fmt: (r) => r.join(", ") },
      { key: "licence", label: "Licence" },
    ], r.body.datasets, { id: "catalog-table" }));
  }

  function trend(v) {
    if (v > 0.005) return "▲ " + CB.fmtNum(v * 100, 1) + " pt";
    if (v < -0.005) return "▼ " + CB.fmtNum(v * 100, 1) + " pt";
    return "→";
  }

  async function scorecard() {
    const box = document.getElementById("scorecard");
    const r = await CB.get("/api/v1/quality/scorecard");
    CB.clear(box);
    if (!r.ok) { CB.note(box, CB.errorText(r), r.status === 403 ? "note" : "error"); return; }
    const pct = (v) => CB.fmtNum(v * 100, 1) + " %";
    box.appendChild(CB.table([
      { key: "dataset", label: "Dataset" },
      { key: "source", label: "Source" },
      { key: "windows", label: "Windows", cls: "num" },
      { key: "score", label: "Score", cls: "num", fmt: pct },
      { key: "completeness", label: "Completeness", cls: "num", fmt: pct },
      { key: "completeness_trend", label: "Trend", fmt: trend },
      { key: "validity", label: "Validity", cls: "num", fmt: pct },
      { key: "uniqueness", label: "Uniqueness", cls: "num", fmt: pct },
      { key: "consistency", label: "Consistency", cls: "num", fmt: pct },
      { key: "timeliness_p95_ms", label: "Lag p95 (ms)", cls: "num", fmt: (v) => CB.fmtNum(v, 0) },
      { key: (l) => l.received + " / " + l.expected, label: "Received / expected", cls: "num" },
      { key: "rejected", label: "Rejected", cls: "num" },
      { key: "duplicates", label: "Duplicates", cls: "num" },
    ], r.body.lines, { id: "scorecard-table" }));
  }

  async function deadLetters() {
    const box = document.getElementById("dead-letters");
    const r = await CB.get("/api/v1/dead-letters?limit=200");
    CB.clear(box);
    if (!r.ok) { CB.note(box, CB.errorText(r), r.status === 403 ? "note" : "error"); return; }
    box.appendChild(CB.table([
      { key: "ts_ms", label: "Time", fmt: CB.fmtTime },
      { key: "reason", label: "Reason" },
      { key: "source", label: "Source" },
      { key: "topic", label: "Topic" },
      { key: "detail", label: "Detail" },
      { key: "payload_preview", label: "Payload (preview)", fmt: (v) => (v.length > 200 ? v.slice(0, 200) + "…" : v) },
    ], r.body.dead_letters, { id: "dead-letter-table" }));
  }

  async function accessLog() {
    const box = document.getElementById("access-log");
    const r = await CB.get("/api/v1/access-log?limit=200");
    CB.clear(box);
    if (!r.ok) { CB.note(box, CB.errorText(r), r.status === 403 ? "note" : "error"); return; }
    box.appendChild(CB.table([
      { key: "ts_ms", label: "Time", fmt: CB.fmtTime },
      { key: "token_id", label: "Token" },
      { key: "application", label: "Application" },
      { key: "purpose", label: "Purpose" },
      { key: "role", label: "Role" },
      { key: "dataset", label: "Dataset" },
      { key: "action", label: "Action" },
      { key: "query", label: "Query" },
      { key: (a) => a, label: "Range", fmt: (a) => (a.from_ms ? CB.fmtTime(a.from_ms) + " – " + CB.fmtTime(a.to_ms) : "") },
      { key: "rows", label: "Rows", cls: "num" },
    ], r.body.rows, { id: "access-table" }));
  }

  async function main() {
    catalog();
    const me = await CB.session();
    if (!me) {
      for (const id of ["scorecard", "dead-letters", "access-log"]) CB.note(document.getElementById(id), "Sign in to see this.");
      return;
    }
    scorecard();
    deadLetters();
    accessLog();
  }

  document.addEventListener("DOMContentLoaded", main);
})();
