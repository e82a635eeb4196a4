// agentq web console: live output, live state, live events, confirmations.
// Everything from the server goes into the page as text (textContent), never
// as HTML.
(function () {
  "use strict";

  // Forms with data-confirm ask first.
  document.addEventListener("submit", function (ev) {
    var msg = ev.target.getAttribute && ev.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) ev.preventDefault();
  });

  function onReady(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  onReady(function () {
    // A job's output and state.
    var log = document.getElementById("log");
    if (log && log.dataset.stream && window.EventSource) {
      var es = new EventSource(log.dataset.stream);
      var state = document.getElementById("job-state");
      var status = document.getElementById("log-status");
      es.addEventListener("log", function (e) {
        var atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 8;
        // Each event's data is the output as a JSON string, newlines and
        // all: appended as it is, byte for byte.
        var text;
        try { text = JSON.parse(e.data); } catch (_) { return; }
        log.appendChild(document.createTextNode(text));
        if (atBottom) window.scrollTo(0, document.body.scrollHeight);
      });
      es.addEventListener("state", function (e) {
        if (state) {
          state.textContent = e.data;
          state.className = "state " + e.data;
        }
      });
      es.addEventListener("end", function (e) {
        es.close();
        if (state && e.data !== "gone") {
          state.textContent = e.data;
          state.className = "state " + e.data;
        }
        if (status) status.textContent = " (finished: reload for the full record)";
      });
    }

    // The overview: its live sections again every few seconds, unless the
    // tab is hidden or someone is in one of its forms.
    var ov = document.querySelector("[data-refresh]");
    if (ov && window.fetch && window.DOMParser) {
      var every = parseInt(ov.dataset.refresh, 10) || 5000;
      setInterval(function () {
        if (document.hidden) return;
        var a = document.activeElement;
        if (a && a !== document.body && ov.contains(a) && a.tagName !== "A") return;
        fetch(location.href, { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) {
            if (!html) return;
            var doc = new DOMParser().parseFromString(html, "text/html");
            ov.querySelectorAll("[data-live]").forEach(function (el) {
              var fresh = doc.getElementById(el.id);
              if (fresh) el.replaceWith(document.importNode(fresh, true));
            });
          })
          .catch(function () {});
      }, every);
    }

    // The event stream.
    var table = document.getElementById("events");
    if (table && table.dataset.stream && window.EventSource) {
      var body = table.tBodies[0];
      var src = new EventSource(table.dataset.stream);
      src.addEventListener("event", function (e) {
        var ev;
        try { ev = JSON.parse(e.data); } catch (_) { return; }
        var f = ev.fields || {};
        var tr = document.createElement("tr");
        var at = document.createElement("td");
        at.textContent = f.at || "";
        var what = document.createElement("td");
        if (f.job) {
          var a = document.createElement("a");
          a.href = "/jobs/" + encodeURIComponent(f.job);
          a.className = "mono";
          a.textContent = f.job;
          what.appendChild(a);
          what.appendChild(document.createTextNode(" " + (f.from || "") + " \u2192 " + (f.state || "") +
            " attempt " + (f.attempt || "") + " " + (f.host || "")));
        } else {
          what.textContent = (f.event || "") + " " + Object.keys(f).filter(function (k) {
            return k !== "event" && k !== "at";
          }).map(function (k) { return k + "=" + f[k]; }).join(" ");
        }
        tr.appendChild(at);
        tr.appendChild(what);
        body.insertBefore(tr, body.firstChild);
      });
    }
  });
})();
