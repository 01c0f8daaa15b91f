// ddpmdp book: two layout helpers (loaded through html_js_files in _config.yml).
//
// 1. Table captions stay visible. Sphinx writes a csv-table's caption inside <table>; inside the
//    horizontal scroll box it would be as wide as the table and cut off at the right edge. Move it
//    in front of the scroll box instead.
// 2. Display equations fit their column. An equation still wider than the column once MathJax has
//    typeset it (a phone) is scaled down, never below 55 %, instead of being cut or scrolled.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".bd-article table > caption").forEach(function (cap) {
    var table = cap.parentElement;
    var box = table.closest(".pst-scrollable-table-container, .table-wrapper") || table;
    var div = document.createElement("div");
    div.className = "ddpmdp-table-caption";
    while (cap.firstChild) div.appendChild(cap.firstChild);
    if (table.id && !div.id) div.setAttribute("data-table-id", table.id);
    box.parentElement.insertBefore(div, box);
    cap.remove();
  });
});

function ddpmdpFitEquations() {
  document.querySelectorAll(".bd-article mjx-container[display='true']").forEach(function (m) {
    m.style.fontSize = "";
    var avail = m.clientWidth, need = m.scrollWidth;
    if (avail > 0 && need > avail + 1) {
      m.style.fontSize = Math.max(55, Math.floor((100 * avail) / need)) + "%";
    }
  });
}

window.addEventListener("load", function () {
  var ready = window.MathJax && MathJax.startup && MathJax.startup.promise;
  if (ready) ready.then(ddpmdpFitEquations);
  var timer = null;
  window.addEventListener("resize", function () {
    clearTimeout(timer);
    timer = setTimeout(ddpmdpFitEquations, 100);
  });
});
