// cloudherd's dashboard: re-render the page's main part when the server says it changed (SSE).
// No framework and nothing fetched from elsewhere: the page works offline.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !main.dataset.live || !window.EventSource) { return; }
  var busy = false, again = false;

  // a field's key across re-renders: its form (by id when it has one: several forms post to one action) and name
  function key(field) {
    var form = field.form;
    return (form ? (form.id || form.action) + "|" : "") + field.name;
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var search = window.location.search;
    var url = window.location.pathname + search + (search ? "&" : "?") + "fragment=1";
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (answer) {
        if (answer.status === 401) { window.location.reload(); return null; }
        return answer.ok ? answer.text() : null;
      })
      .then(function (html) {
        if (html === null) { return; }
        // what the user is typing or ticking survives the re-render (a scale target, the name that confirms a
        // destroy, the processes chosen to suspend and why)
        var focused = document.activeElement && document.activeElement.name;
        var typed = {}, ticked = {};
        main.querySelectorAll("input[type='text']").forEach(function (field) {
          if (field.value) { typed[key(field)] = field.value; }
        });
        main.querySelectorAll("input[type='checkbox']").forEach(function (box) {
          ticked[key(box) + "|" + box.value] = box.checked;
        });
        main.innerHTML = html;
        main.querySelectorAll("input[type='text']").forEach(function (field) {
          if (typed[key(field)]) { field.value = typed[key(field)]; }
        });
        main.querySelectorAll("input[type='checkbox']").forEach(function (box) {
          var was = ticked[key(box) + "|" + box.value];
          if (was !== undefined) { box.checked = was; }
        });
        main.dataset.refreshed = String(Number(main.dataset.refreshed || "0") + 1);
        if (focused) {
          var field = main.querySelector("[name='" + focused + "'][type='text']");
          if (field) { field.focus(); }
        }
      })
      .catch(function () { /* the next change tries again */ })
      .finally(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  // Every digest re-renders, the first one too: what changed between this page's rendering and the
  // stream's first message would be missed otherwise.  The stream reconnects by itself (retry: 1000).
  var source = new EventSource(main.dataset.live);
  source.addEventListener("change", refresh);
  // the login was revoked (or expired): back to the login page, which says so
  source.addEventListener("denied", function () { source.close(); window.location.reload(); });
  window.addEventListener("pagehide", function () { source.close(); });
  // back from the browser's cache: the stream was closed, so render anew
  window.addEventListener("pageshow", function (event) { if (event.persisted) { window.location.reload(); } });
})();
