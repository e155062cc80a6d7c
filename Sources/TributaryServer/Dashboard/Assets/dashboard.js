// Tributary dashboard: keeps variant rows and running runs fresh without reloading the page.
// Every element with data-refresh="<url>" is re-fetched every few seconds (while the tab is
// visible) and its content replaced when the server's HTML changed — unless the keyboard focus is
// inside it, so a row never disappears under a user's hand. Content marked data-final (a finished
// run) ends the element's refreshing. No build step, no dependencies.
(function () {
  "use strict";
  var intervalMs = 3000;
  var last = new WeakMap();

  function refresh(element) {
    var url = element.getAttribute("data-refresh");
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" }, redirect: "error" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        if (last.get(element) === html) { return; }
        if (element.contains(document.activeElement)) { return; }
        last.set(element, html);
        element.innerHTML = html;
        if (element.querySelector("[data-final]")) { element.removeAttribute("data-refresh"); }
      });
  }

  function tick() {
    if (document.hidden) { return; }
    var elements = document.querySelectorAll("[data-refresh]");
    var note = document.getElementById("refresh-state");
    var pending = [];
    for (var i = 0; i < elements.length; i++) { pending.push(refresh(elements[i])); }
    Promise.all(pending).then(function () {
      if (note) { note.textContent = "Status updated " + new Date().toLocaleTimeString() + "."; }
    }, function () {
      if (note) { note.textContent = "Could not update the status (signed out, or the server is unreachable): reload the page."; }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector("[data-refresh]")) { setInterval(tick, intervalMs); }
  });
})();
