/* Lorebot console: the drop zone, confirmations, and the live job progress. No dependencies. */
(function () {
  "use strict";

  function text(el, value) { if (el) el.textContent = value == null ? "" : String(value); }

  /* -- upload: the file input covers the drop zone, so dropping and picking both fill it -- */
  /* Each file's path within the upload goes along as JSON, in the order the files are sent (the
     inputs in page order): the server keeps "team-a/README.md" and "team-b/README.md" apart. */
  function chosen(form) {
    var files = [];
    form.querySelectorAll('input[type="file"]').forEach(function (input) {
      Array.prototype.forEach.call(input.files, function (file) { files.push(file); });
    });
    return files;
  }
  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    var folder = form.querySelector("[data-folder-input]");
    var list = form.querySelector("[data-file-list]");
    function show() {
      list.replaceChildren();
      chosen(form).forEach(function (file) {
        var li = document.createElement("li");
        li.textContent = file.webkitRelativePath || file.name;
        list.appendChild(li);
      });
    }
    form.showChosen = show;
    if (folder) folder.addEventListener("change", show);
    form.addEventListener("submit", function (event) {
      var files = chosen(form);
      if (!files.length) {
        event.preventDefault();
        window.alert("Choose at least one file to upload.");
        return;
      }
      form.querySelector("[data-paths]").value = JSON.stringify(files.map(function (file) {
        return file.webkitRelativePath || file.name;
      }));
    });
  });

  document.querySelectorAll("[data-dropzone]").forEach(function (zone) {
    var input = zone.querySelector("[data-file-input]");
    var form = zone.closest("form");
    function show() { if (form && form.showChosen) form.showChosen(); }
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.add("dragover"); });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("dragover"); });
    });
    zone.addEventListener("drop", function (event) {
      // A drop that lands beside the input (old browsers) still fills it.
      if (event.target !== input && event.dataTransfer && event.dataTransfer.files.length) {
        event.preventDefault();
        input.files = event.dataTransfer.files;
        show();
      }
    });
    input.addEventListener("change", show);
  });

  /* -- progress bars: the width comes from data-percent (the Content-Security-Policy allows no style="…") -- */
  document.querySelectorAll(".bar[data-percent]").forEach(function (bar) {
    bar.style.width = Math.max(0, Math.min(100, Number(bar.getAttribute("data-percent")) || 0)) + "%";
  });

  /* -- destructive forms ask first -- */
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  /* -- times: the server writes UTC into <time datetime>; each reader sees their own time zone -- */
  var SHORT = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var when = new Date(el.getAttribute("datetime"));
    if (isNaN(when.getTime())) return;
    var options = Object.assign({}, SHORT);
    if (el.hasAttribute("data-seconds")) options.second = "2-digit";
    if (when.getFullYear() !== new Date().getFullYear()) options.year = "numeric";
    el.textContent = when.toLocaleString(undefined, options);
    el.title = when.toLocaleString(undefined, { dateStyle: "full", timeStyle: "long" });
    el.setAttribute("data-localized", "");
  });

  /* -- job detail: poll /status/<id> every second until the job is finished -- */
  var live = document.querySelector("[data-job-live]");
  if (!live || live.getAttribute("data-finished") === "true") return;
  var url = live.getAttribute("data-status-url");
  var FINISHED = ["succeeded", "failed", "partially_failed", "cancelled"];

  function field(name) { return document.querySelector('[data-field="' + name + '"]'); }
  function label(state) { return String(state || "").replace(/_/g, " "); }
  function badge(el, state) {
    if (!el) return;
    el.className = "badge badge-" + state;
    el.textContent = label(state);
  }
  function progressOf(s) {
    var p = s.progress;
    if (p && typeof p === "object") return [p.done || 0, p.total || 0];
    return [s.progress_done || 0, s.progress_total || 0];
  }
  function eta(s) {
    var v = s.eta_seconds != null ? s.eta_seconds : s.eta;
    if (v == null || FINISHED.indexOf(s.state) >= 0) return "";
    return "about " + Math.max(0, Math.round(v)) + " s left";
  }
  function clock(iso) {
    if (!iso) return "—";
    var d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toISOString().substring(11, 19);
  }

  function renderFile(row, f) {
    badge(row.querySelector('[data-file-field="state"]'), f.state);
    var chunks = f.state === "running" && f.chunks_total ? f.chunks_embedded + " / " + f.chunks_total : f.chunks;
    text(row.querySelector('[data-file-field="chunks"]'), chunks != null ? chunks : "");
    if (f.seconds != null) text(row.querySelector('[data-file-field="seconds"]'), Number(f.seconds).toFixed(1));
    var cell = row.querySelector('[data-file-field="error"]');
    var type = f.error_type || "";
    var message = f.error_message || "";
    var key = type + "|" + message;
    // Rewrite the cell only when the error changed: the server-rendered traceback stays put.
    if (!cell || cell.getAttribute("data-error") === key) return;
    cell.setAttribute("data-error", key);
    cell.replaceChildren();
    if (!type && !message) return;
    var box = document.createElement("div");
    box.className = "error-text";
    var strong = document.createElement("strong");
    strong.textContent = type;
    box.appendChild(strong);
    box.appendChild(document.createTextNode((type && message ? ": " : "") + message));
    cell.appendChild(box);
    if (f.traceback) {
      var details = document.createElement("details");
      var summary = document.createElement("summary");
      summary.textContent = "Traceback";
      var pre = document.createElement("pre");
      pre.textContent = f.traceback;
      details.append(summary, pre);
      cell.appendChild(details);
    }
  }

  function renderFiles(files) {
    var body = document.querySelector("[data-files]");
    if (!body || !Array.isArray(files)) return;
    // The status lists the job's files in the same order as the table (by primary key).
    files.forEach(function (f, i) {
      var row = body.querySelector('[data-file-index="' + i + '"]');
      if (row) renderFile(row, f);
    });
  }

  function render(s) {
    var pd = progressOf(s), done = pd[0], total = pd[1];
    var pct = total ? Math.floor((100 * done) / total) : 0;
    var finished = s.finished === true || FINISHED.indexOf(s.state) >= 0;
    badge(field("state"), s.state);
    text(field("stage"), s.stage);
    text(field("done"), done);
    text(field("total"), total);
    text(field("eta"), eta(s));
    var c = finished ? null : s.current;
    text(field("current"), !c ? "" : c.chunks_total
      ? c.filename + ": " + c.chunks_embedded + " of " + c.chunks_total + " chunks embedded"
      : c.filename + ": " + s.stage);
    text(field("attempts"), s.attempts != null ? s.attempts : field("attempts").textContent);
    if ("started_at" in s) text(field("started"), clock(s.started_at));
    if ("finished_at" in s) text(field("finished"), clock(s.finished_at));
    var bar = field("progress");
    bar.setAttribute("aria-valuenow", pct);
    var inner = bar.querySelector(".bar");
    inner.style.width = (finished && total && done >= total ? 100 : pct) + "%";
    inner.className = "bar" + (finished ? " done-" + s.state : " running");
    renderFiles(s.files);
    var retry = document.querySelector('[data-show-when="retry"]');
    var cancel = document.querySelector('[data-show-when="cancel"]');
    // Retry shows when a finished job has failed or cancelled files to run again.
    var retryable = (s.files || []).some(function (f) {
      return (f.state === "failed" || f.state === "cancelled") && f.document_id != null;
    });
    if (retry) retry.hidden = !finished || !retryable;
    if (cancel) cancel.hidden = finished || s.state === "cancelling";
    return finished;
  }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (s) {
        if (render(s)) live.setAttribute("data-finished", "true");
        else window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1000);
})();

/* Sources: only the chosen kind's settings show (without script, every kind's fieldset shows; the server
   reads only the chosen one's). */
(function () {
  "use strict";
  document.querySelectorAll("form[data-source-form]").forEach(function (form) {
    function show() {
      var checked = form.querySelector('input[name="kind"]:checked');
      form.querySelectorAll("fieldset[data-kind]").forEach(function (set) {
        set.hidden = !!checked && set.getAttribute("data-kind") !== checked.value;
      });
    }
    form.querySelectorAll('input[name="kind"]').forEach(function (input) { input.addEventListener("change", show); });
    show();
  });
})();

/* Documents: the header's checkbox ticks every document on this page for the bulk move. */
(function () {
  "use strict";
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    all.addEventListener("change", function () {
      var name = all.getAttribute("data-select-all");
      document.querySelectorAll('input[type="checkbox"][name="' + name + '"]').forEach(function (box) {
        box.checked = all.checked;
      });
    });
  });
})();
