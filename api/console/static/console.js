// The live alert feed of the queue page: the console's alert stream (server-sent events,
// authenticated by the session cookie) into a list, and a refresh of the queue table, which
// htmx fetches again when it sees the "oc:alert" event. Text goes in as text, never as HTML.
(function () {
  "use strict";
  const MAX_ITEMS = 30;

  function item(a) {
    const li = document.createElement("li");
    li.className = "fresh";
    const sev = document.createElement("span");
    sev.className = "sev sev-" + a.severity;
    sev.textContent = a.severity;
    const link = document.createElement("a");
    link.href = "/console/" + (a.asset_kind === "vehicle" ? "vehicles/" : "chargers/") +
      encodeURIComponent(a.asset_id);
    link.textContent = a.asset_id;
    const what = document.createElement("div");
    what.textContent = a.change + ": " + a.title;
    li.append(sev, " ", link, what);
    return li;
  }

  function start() {
    const list = document.getElementById("live-alerts");
    const status = document.getElementById("live-status");
    if (!list || !window.EventSource) return;
    const source = new EventSource(list.dataset.stream);
    source.addEventListener("open", function () {
      status.textContent = "Live: new alerts appear here, and the queue refreshes.";
      list.dataset.connected = "true";
    });
    source.addEventListener("error", function () {
      status.textContent = "Reconnecting to the alert stream…";
      list.dataset.connected = "false";
    });
    source.addEventListener("alert", function (event) {
      list.prepend(item(JSON.parse(event.data)));
      while (list.children.length > MAX_ITEMS) list.lastElementChild.remove();
      document.body.dispatchEvent(new CustomEvent("oc:alert"));
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
