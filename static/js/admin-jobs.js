// Jobs page: poll /admin/jobs.json every 2 s and update rows in place (textContent only);
// cancel (after a confirmation) / retry buttons call the jobs REST API with the session's CSRF token.
(function () {
  "use strict";
  var table = document.getElementById("jobs-table");
  if (!table) return;
  var status = document.getElementById("jobs-status");
  var canAct = table.getAttribute("data-can-act") === "1";
  var single = table.tagName !== "TABLE";  // the detail page follows one job
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var POLL_MS = 2000;
  var timer = null;

  function say(text) { if (status) status.textContent = text; }
  function when(iso) { return iso ? iso.slice(0, 19).replace("T", " ") : "\u2014"; }
  function field(root, name) { return root.querySelector('[data-field="' + name + '"]'); }
  function setText(root, name, text) { var el = field(root, name); if (el && el.textContent !== text) el.textContent = text; }

  function cell(tr, text, attr) {
    var td = document.createElement("td");
    if (attr) td.setAttribute("data-field", attr);
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function button(action, id) {
    var b = document.createElement("button");
    b.type = "button";
    b.setAttribute("data-job-action", action);
    b.setAttribute("data-job-id", String(id));
    b.textContent = action === "cancel" ? "Cancel" : "Retry";
    return b;
  }

  // a job that appeared since the page was rendered: build its row from the JSON
  function newRow(job) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-job-id", String(job.id));
    var th = document.createElement("th");
    th.scope = "row";
    var a = document.createElement("a");
    a.href = "/admin/jobs/" + job.id;
    a.textContent = "#" + job.id;
    th.appendChild(a);
    tr.appendChild(th);
    cell(tr, job.kind);
    var st = document.createElement("span");
    st.setAttribute("data-field", "state");
    cell(tr, "").appendChild(st);
    var td = cell(tr, "");
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.setAttribute("data-field", "progress-bar");
    bar.setAttribute("aria-label", "Progress of job " + job.id);
    var pct = document.createElement("span");
    pct.setAttribute("data-field", "progress");
    td.appendChild(bar);
    td.appendChild(document.createTextNode(" "));
    td.appendChild(pct);
    cell(tr, "", "message");
    var trig = cell(tr, "", "trigger");
    trig.className = "trigger";
    (job.trigger_pieces || [{ text: job.trigger, href: null }]).forEach(function (p) {
      if (!p.href) { trig.appendChild(document.createTextNode(p.text)); return; }
      var link = document.createElement("a");
      link.href = p.href;
      link.textContent = p.text;
      trig.appendChild(link);
    });
    cell(tr, when(job.created_at));
    cell(tr, "", "started");
    cell(tr, "", "finished");
    cell(tr, "", "error").className = "error-text";
    if (canAct) {
      var act = cell(tr, "");
      act.className = "actions";
      act.appendChild(button("cancel", job.id));
      act.appendChild(document.createTextNode(" "));
      act.appendChild(button("retry", job.id));
    }
    var body = table.tBodies[0];
    var empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    body.insertBefore(tr, body.firstChild);
    return tr;
  }

  function update(job) {
    var root = table.querySelector('[data-job-id="' + job.id + '"]');
    if (!root) {
      if (single) return;
      root = newRow(job);
    }
    var state = field(root, "state");
    if (state) {
      var label = job.state + (job.cancel_requested && job.state === "running" ? " (cancelling)" : "");
      if (state.textContent !== label) state.textContent = label;
      state.className = "state state-" + job.state;
    }
    var bar = field(root, "progress-bar");
    if (bar) bar.value = job.progress;
    setText(root, "progress", Math.round(job.progress) + "%");
    setText(root, "message", job.message || "");
    setText(root, "started", when(job.started_at));
    setText(root, "finished", when(job.finished_at));
    setText(root, "error", job.error || "");
    var c = root.querySelector('[data-job-action="cancel"]');
    var r = root.querySelector('[data-job-action="retry"]');
    if (c) c.hidden = !job.cancellable;
    if (r) r.hidden = !job.retryable;
  }

  function poll() {
    var url = "/admin/jobs.json";
    if (single) url += "?id=" + encodeURIComponent(table.querySelector("[data-job-id]").getAttribute("data-job-id"));
    else if (table.getAttribute("data-query")) url += "?" + table.getAttribute("data-query").slice(1);  // this page
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) {
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.json();
      })
      .then(function (data) {
        data.jobs.slice().reverse().forEach(update);
        table.setAttribute("data-polled", String(Date.now()));
      })
      .catch(function (err) { say("Could not refresh the jobs (" + err.message + "); retrying."); });
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(function () { poll().then(schedule); }, POLL_MS);
  }

  function act(action, id, btn) {
    // cancelling throws away a queued or running job's work: ask first (retry is harmless, no question)
    if (action === "cancel" && !window.confirm("Cancel job #" + id + "? Work it has done so far is lost; " +
        "you can retry it afterwards.")) {
      say("Job #" + id + " was not cancelled.");
      return;
    }
    btn.disabled = true;
    fetch("/api/v1/jobs/" + encodeURIComponent(id) + "/" + action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
    })
      .then(function (res) {
        return res.json().catch(function () { return {}; }).then(function (body) {
          if (!res.ok) {
            var msg = body && body.error ? body.error.message : "HTTP " + res.status;
            throw new Error(msg);
          }
          return body;
        });
      })
      .then(function (body) {
        say(action === "cancel" ? "Cancel requested for job #" + id + "."
          : "Retry queued as job #" + body.id + ".");
        return poll();
      })
      .catch(function (err) { say("Could not " + action + " job #" + id + ": " + err.message); })
      .then(function () { btn.disabled = false; });
  }

  table.addEventListener("click", function (ev) {
    var btn = ev.target.closest("[data-job-action]");
    if (!btn) return;
    act(btn.getAttribute("data-job-action"), btn.getAttribute("data-job-id"), btn);
  });

  document.addEventListener("visibilitychange", function () { if (!document.hidden) poll(); });
  schedule();
})();
