// Reloads the page every data-refresh seconds while the box is ticked; the
// choice is remembered for the next page. Nothing else runs here.
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  var box = document.getElementById("autorefresh");
  if (!seconds || !box) {
    return;
  }
  var off = window.localStorage && localStorage.getItem("keyrot.autorefresh") === "off";
  box.checked = !off;
  var timer = null;
  function arm() {
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    if (box.checked) {
      timer = setTimeout(function () { window.location.reload(); }, seconds * 1000);
    }
  }
  box.addEventListener("change", function () {
    if (window.localStorage) {
      localStorage.setItem("keyrot.autorefresh", box.checked ? "on" : "off");
    }
    arm();
  });
  arm();
})();
