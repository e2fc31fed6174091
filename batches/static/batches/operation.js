// The admin's operation page: poll the progress JSON and move the bar until
// the operation is finished. No framework; text goes in with textContent.
(function () {
  "use strict";
  function start() {
    var root = document.getElementById("cc-operation");
    if (!root) return;
    var url = root.dataset.url;
    var bar = document.getElementById("cc-operation-bar");
    var state = document.getElementById("cc-operation-state");
    var errors = document.getElementById("cc-operation-errors");

    function show(data) {
      bar.value = data.percent;
      state.textContent = data.state_label;
      state.dataset.state = data.state;
      document.getElementById("cc-operation-percent").textContent = data.percent;
      document.getElementById("cc-operation-done").textContent = data.done;
      document.getElementById("cc-operation-total").textContent = data.total;
      document.getElementById("cc-operation-cancelled").textContent = data.cancelled_jobs;
      document.getElementById("cc-operation-deleted").textContent = data.deleted_jobs;
      errors.textContent = "";
      data.errors.forEach(function (text) {
        var item = document.createElement("li");
        item.textContent = text;
        errors.appendChild(item);
      });
    }

    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.json(); })
        .then(function (data) {
          show(data);
          if (!data.finished) setTimeout(poll, 1000);
        })
        .catch(function () { setTimeout(poll, 3000); });
    }
    if (state.dataset.state !== "succeeded" && state.dataset.state !== "failed") poll();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
