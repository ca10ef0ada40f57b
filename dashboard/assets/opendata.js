// Open-data page: shows the current (delayed) product as JSON text.
"use strict";
(function () {
  const CB = window.CB;
  async function main() {
    CB.session();
    const pre = document.getElementById("sample-live");
    const r = await CB.get("/api/v1/open/parking");
    pre.textContent = r.ok ? JSON.stringify(r.body.slice(0, 5), null, 2) + (r.body.length > 5 ? "\n… " + r.body.length + " lots in total" : "") : CB.errorText(r);
  }
  document.addEventListener("DOMContentLoaded", main);
})();
