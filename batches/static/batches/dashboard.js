// The staff dashboard: render the embedded data, then poll the JSON view.
// No framework and no build step; DOM nodes are built with textContent so
// batch names can never inject markup.
(function () {
  "use strict";
  var root = document.getElementById("cc-dashboard");
  if (!root) return;
  var url = root.dataset.url;
  var canPause = root.dataset.canPause === "true";
  // The words come from the page, in the request's language (dashboard.py).
  var texts = JSON.parse(document.getElementById("cc-dashboard-texts").textContent);

  function t(key, values) {
    return texts[key].replace(/%\((\w+)\)s/g, function (_, name) {
      return String(values[name]);
    });
  }
  var interval = parseInt(root.dataset.refreshMs, 10) || 3000;
  var SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }

  function setText(id, value) {
    var node = document.getElementById(id);
    if (node) node.textContent = value;
  }

  function time(iso) {
    return iso ? new Date(iso).toLocaleTimeString() : "-";
  }

  function tooltip(counts) {
    return Object.keys(counts).map(function (k) {
      return k.replace("_", " ") + ": " + counts[k];
    }).join(" · ");
  }

  function renderBatches(batches) {
    var tbody = document.querySelector("#cc-batches tbody");
    tbody.replaceChildren.apply(tbody, batches.map(function (b) {
      var bar = el("div", {class: "cc-bar", style: "width: " + (b.progress * 100).toFixed(1) + "%"});
      var state = el("span", {class: "cc-badge cc-" + b.state, text: texts[b.state] || b.state});
      var stateCell = el("td", {}, [state]);
      if (b.pause_reason) {
        stateCell.appendChild(el("br"));
        stateCell.appendChild(el("small", {class: "cc-reason", text: b.pause_reason}));
      }
      if (b.state === "paused") {
        // What the pause means right now: nothing new starts, calls end.
        stateCell.appendChild(el("br"));
        stateCell.appendChild(el("small", {class: "cc-effect", text: effect(b.in_progress)}));
      }
      var action = el("td", {});
      if (canPause && b.state === "active") {
        var button = el("button", {type: "button", class: "cc-pause", text: t("pause", {})});
        button.addEventListener("click", function () { pause(b, button); });
        action.appendChild(button);
      }
      return el("tr", {"data-batch-id": b.batch_id}, [
        el("td", {}, [el("a", {href: b.url, text: b.name}), el("br"),
                      el("code", {class: "cc-id", text: b.batch_id})]),
        el("td", {text: b.account}),
        el("td", {class: "cc-num", text: String(b.priority)}),
        stateCell,
        el("td", {title: tooltip(b.counts)}, [
          el("div", {class: "cc-progress"}, [bar]),
          el("small", {class: "cc-finished", text: b.finished + " / " + b.total})]),
        el("td", {class: "cc-num cc-in-progress", text: String(b.in_progress)}),
        el("td", {class: "cc-num cc-rate", text: t("per_hour", {n: b.rate_per_hour})}),
        el("td", {class: "cc-eta", text: eta(b.eta)}),
        action
      ]);
    }));
    document.getElementById("cc-batches-empty").hidden = batches.length > 0;
  }

  function effect(finishing) {
    return finishing ? t("effect_finishing", {n: finishing}) : t("effect_none", {});
  }

  function eta(e) {
    if (e.at) return new Date(e.at).toLocaleString();
    return "- (" + e.why_not + ")";
  }

  function flash(text, isError) {
    var node = document.getElementById("cc-flash");
    node.textContent = text;
    node.className = isError ? "cc-flash cc-flash-error" : "cc-flash";
    node.hidden = false;
  }

  function pause(b, button) {
    var question = t("confirm", {name: b.name, n: b.in_progress});
    if (!window.confirm(question)) return;
    button.disabled = true;
    var token = root.querySelector("input[name=csrfmiddlewaretoken]").value;
    fetch(b.pause_url, {method: "POST", credentials: "same-origin",
                        headers: {"X-CSRFToken": token, Accept: "application/json"}})
      .then(function (r) {
        return r.json().then(function (body) { return {ok: r.ok, body: body}; });
      })
      .then(function (res) {
        if (!res.ok) throw new Error(res.body.error ? res.body.error.message : "failed");
        flash("\u201c" + b.name + "\u201d \u2014 " + res.body.message);
        refreshNow();
      })
      .catch(function (err) {
        button.disabled = false;
        flash(t("pause_failed", {name: b.name, error: err.message}), true);
      });
  }

  function renderWorkers(workers) {
    var tbody = document.querySelector("#cc-workers tbody");
    tbody.replaceChildren.apply(tbody, workers.map(function (w) {
      return el("tr", {}, [
        el("td", {text: w.worker_id}),
        el("td", {class: "cc-num", text: String(w.in_progress)}),
        el("td", {text: time(w.last_seen)})
      ]);
    }));
    document.getElementById("cc-workers-empty").hidden = workers.length > 0;
  }

  function renderChart(points) {
    var svg = document.getElementById("cc-chart");
    var max = Math.max.apply(null, points.map(function (p) { return p.calls; }).concat([1]));
    var width = 600 / points.length;
    var bars = points.map(function (p, i) {
      var h = (p.calls / max) * 116;
      var rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", (i * width + 1).toFixed(2));
      rect.setAttribute("width", Math.max(width - 2, 1).toFixed(2));
      rect.setAttribute("y", (120 - h).toFixed(2));
      rect.setAttribute("height", h.toFixed(2));
      var title = document.createElementNS(SVG, "title");
      title.textContent = t("calls_at", {time: time(p.minute), n: p.calls});
      rect.appendChild(title);
      return rect;
    });
    svg.replaceChildren.apply(svg, bars);
    setText("cc-chart-max", t("peak", {n: max}));
  }

  function render(data) {
    setText("cc-calls-in-progress", data.calls_in_progress);
    setText("cc-workers-count", data.workers_count);
    setText("cc-calls-last-hour", data.calls_last_hour);
    setText("cc-batch-counts", data.active_batches + " / " + data.paused_batches);
    setText("cc-updated", time(data.generated_at));
    renderBatches(data.batches);
    renderWorkers(data.workers);
    renderChart(data.calls_per_minute);
  }

  var timer = null;
  var inflight = false;

  function refreshNow() {
    window.clearTimeout(timer);
    refresh();
  }

  function refresh() {
    if (inflight) return;  // the request under way schedules the next one
    inflight = true;
    fetch(url, {credentials: "same-origin", cache: "no-store",
                headers: {Accept: "application/json"}})
      .then(function (r) {
        var type = r.headers.get("Content-Type") || "";
        // A logged-out session gets the login page, not JSON.
        if (!r.ok || type.indexOf("application/json") !== 0) throw new Error(r.status);
        return r.json();
      })
      .then(function (data) {
        render(data);
        document.getElementById("cc-stale").hidden = true;
      })
      .catch(function () { document.getElementById("cc-stale").hidden = false; })
      .then(function () {
        inflight = false;
        timer = window.setTimeout(refresh, interval);
      });
  }

  render(JSON.parse(document.getElementById("cc-dashboard-data").textContent));
  timer = window.setTimeout(refresh, interval);
})();
