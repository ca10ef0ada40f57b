// CityBrain dashboard: helpers shared by every page. No data is ever written with innerHTML:
// elements are built with createElement and filled with textContent.
"use strict";
(function () {
  const CB = {};

  // Builds an element: CB.el("td", {class: "num"}, "text" | [children]).
  CB.el = function (tag, attrs, content) {
    const e = tag.startsWith("svg:")
      ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
      : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    }
    if (Array.isArray(content)) content.forEach((c) => c && e.appendChild(c));
    else if (content !== undefined && content !== null) e.textContent = String(content);
    return e;
  };

  CB.clear = function (e) {
    while (e.firstChild) e.removeChild(e.firstChild);
  };

  CB.fmtTime = function (ms) {
    if (ms === undefined || ms === null) return "";
    return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  };

  CB.fmtNum = function (v, digits) {
    if (v === undefined || v === null || Number.isNaN(v)) return "–";
    return Number(v).toFixed(digits === undefined ? 2 : digits);
  };

  // GET JSON; resolves {ok, status, body}. The session cookie is sent automatically.
  CB.get = async function (url) {
    const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    let body = null;
    try {
      body = await r.json();
    } catch (_) {
      body = null;
    }
    return { ok: r.ok, status: r.status, body: body };
  };

  CB.errorText = function (res) {
    if (res.body && res.body.message) return res.status + ": " + res.body.message;
    return "HTTP " + res.status;
  };

  // Shows who is signed in, or a sign-in form; resolves to the token info or null.
  CB.session = async function () {
    const box = document.getElementById("session");
    // A sign-in link (`/#token=...`, printed by `citybrain demo`) carries the token in the fragment, which
    // browsers never send to a server; it is exchanged for the session cookie and removed from the URL.
    if (location.hash.startsWith("#token=")) {
      const token = decodeURIComponent(location.hash.slice("#token=".length));
      history.replaceState(null, "", location.pathname + location.search);
      await fetch("/api/v1/session", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: token }),
      });
    }
    const me = await CB.get("/api/v1/me");
    CB.clear(box);
    if (me.ok) {
      box.appendChild(CB.el("span", { id: "whoami" }, me.body.application + " (" + me.body.role + ")"));
      const out = CB.el("button", { type: "button", id: "signout" }, "Sign out");
      out.addEventListener("click", async () => {
        await fetch("/api/v1/session", { method: "DELETE", credentials: "same-origin" });
        location.reload();
      });
      box.appendChild(out);
      return me.body;
    }
    const form = CB.el("form", { id: "signin" });
    const input = CB.el("input", { type: "password", id: "token", placeholder: "API token", autocomplete: "off", "aria-label": "API token" });
    const btn = CB.el("button", { type: "submit" }, "Sign in");
    const msg = CB.el("span", { id: "signin-msg", class: "error" });
    form.appendChild(input);
    form.appendChild(btn);
    form.appendChild(msg);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const r = await fetch("/api/v1/session", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: input.value.trim() }),
      });
      if (r.ok) location.reload();
      else {
        let m = "HTTP " + r.status;
        try { m = (await r.json()).message; } catch (_) { /* keep */ }
        msg.textContent = m;
      }
    });
    box.appendChild(form);
    return null;
  };

  CB.note = function (container, text, cls) {
    container.appendChild(CB.el("p", { class: cls || "note" }, text));
  };

  // Simple table: columns [{key, label, fmt}], rows array of objects.
  CB.table = function (columns, rows, attrs) {
    const t = CB.el("table", attrs || {});
    const head = CB.el("tr", {}, columns.map((c) => CB.el("th", {}, c.label || c.key)));
    t.appendChild(CB.el("thead", {}, [head]));
    const body = CB.el("tbody");
    for (const r of rows) {
      body.appendChild(CB.el("tr", {}, columns.map((c) => {
        const v = typeof c.key === "function" ? c.key(r) : r[c.key];
        return CB.el("td", { class: c.cls }, c.fmt ? c.fmt(v, r) : v);
      })));
    }
    t.appendChild(body);
    return t;
  };

  window.CB = CB;
})();
