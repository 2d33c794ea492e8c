// Zoom for the side-by-side comparison: both images together, by buttons or keys (+, -, 0), never
// mouse only. Each image sits in a focusable scrolling viewport, so the arrow keys move around it
// when zoomed. Loaded as a file because the Content-Security-Policy forbids inline scripts.
(function () {
  "use strict";
  const pair = document.getElementById("compare-pair");
  if (!pair) { return; }
  const level = document.getElementById("zoom-level");
  const steps = [1, 1.5, 2, 3, 4];
  let step = 0;

  function apply() {
    const zoom = steps[step];
    pair.dataset.zoom = String(zoom);
    pair.querySelectorAll("img.zoomable").forEach(function (img) {
      const base = Number(img.getAttribute("width"));
      img.style.width = (base * zoom) + "px";
      img.style.height = (base * zoom) + "px";
    });
    // Keep the centre of each image in view as it grows.
    pair.querySelectorAll(".viewport").forEach(function (view) {
      view.scrollLeft = (view.scrollWidth - view.clientWidth) / 2;
      view.scrollTop = (view.scrollHeight - view.clientHeight) / 2;
    });
    // The buttons stay enabled (a disabled button would drop the keyboard focus); the status says the limit.
    level.textContent = "Zoom " + Math.round(zoom * 100) + "%" +
      (step === steps.length - 1 ? " (the largest)" : step === 0 ? " (actual page size)" : "");
  }
  function zoomTo(next) {
    step = Math.max(0, Math.min(steps.length - 1, next));
    apply();
  }

  document.getElementById("zoom-in").addEventListener("click", function () { zoomTo(step + 1); });
  document.getElementById("zoom-out").addEventListener("click", function () { zoomTo(step - 1); });
  document.getElementById("zoom-reset").addEventListener("click", function () { zoomTo(0); });
  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) { return; }
    if (event.key === "+" || event.key === "=") { zoomTo(step + 1); event.preventDefault(); }
    else if (event.key === "-" || event.key === "_") { zoomTo(step - 1); event.preventDefault(); }
    else if (event.key === "0") { zoomTo(0); event.preventDefault(); }
  });
  apply();
}());
