// The admin console's only script. Pages work without it; it adds confirmations
// and the live progress of a broadcast.
(function () {
  "use strict";

  // Buttons with data-confirm ask before submitting.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });

  document.querySelectorAll("[data-back]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      if (window.history.length > 1) { event.preventDefault(); window.history.back(); }
    });
  });

  // A broadcast's progress: poll the JSON view until the job is over.
  var box = document.getElementById("progress");
  if (!box) { return; }
  var url = box.getAttribute("data-url");
  var bar = document.getElementById("bar");

  function set(field, value) {
    var el = box.querySelector('[data-field="' + field + '"]');
    if (el) { el.textContent = value; }
  }

  function rows(tbody, counts, labels, empty, withLabel) {
    if (!tbody) { return; }
    var keys = Object.keys(counts).sort();
    tbody.textContent = "";
    if (!keys.length) {
      var tr = tbody.insertRow(), td = tr.insertCell();
      td.colSpan = withLabel ? 3 : 2; td.className = "muted"; td.textContent = empty;
      return;
    }
    keys.forEach(function (key) {
      var tr = tbody.insertRow();
      if (withLabel) { tr.insertCell().textContent = key; tr.cells[0].className = "mono"; tr.insertCell().textContent = labels[key] || ""; }
      else { tr.insertCell().textContent = labels[key] || key; }
      tr.insertCell().textContent = counts[key];
    });
  }

  function show(data) {
    var done = data.sent + data.failed + data.skipped;
    var percent = data.total ? Math.floor(100 * done / data.total) : (data.status === "done" ? 100 : 0);
    bar.max = Math.max(data.total, 1);
    bar.value = data.total ? done : (data.status === "done" ? 1 : 0);
    set("percent", percent);
    ["total", "sent", "failed", "skipped", "rate_per_second", "status_label", "recorded"].forEach(function (f) { set(f, data[f]); });
    set("remaining", data.pending + data.sending);
    set("eta", data.eta_seconds === null ? "—" : data.eta_seconds + " 秒");
    box.setAttribute("data-status", data.status);
    box.querySelectorAll("[data-show]").forEach(function (el) { el.hidden = !data[el.getAttribute("data-show")]; });
    document.querySelectorAll("[data-when]").forEach(function (form) {
      form.hidden = form.getAttribute("data-when").split(" ").indexOf(data.status) < 0;
    });
    rows(document.getElementById("failed-rows"), data.failed_by_code, data.failed_labels, "没有失败。", true);
    rows(document.getElementById("skipped-rows"), data.skipped_by_reason, data.skipped_labels, "没有跳过。", false);
    return data.status === "queued" || data.status === "sending";
  }

  // Every second while sending; every 5 s while paused (another admin may
  // resume); not at all once done or cancelled. A session that ended stops it.
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { set("status_label", "登录已过期，请刷新页面重新登录"); return null; }
        if (!response.ok) { throw new Error(response.status); }
        return response.json();
      })
      .then(function (data) {
        if (data === null) { return; }
        if (show(data)) { setTimeout(poll, 1000); } else if (data.status === "paused") { setTimeout(poll, 5000); }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  poll();
})();
