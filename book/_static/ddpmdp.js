// ddpmdp book: keep table captions visible when a wide table scrolls horizontally.
// Sphinx writes a csv-table's caption inside <table>; inside the horizontal scroll box it would be
// as wide as the table and cut off at the right edge. Move it in front of the scroll box instead.
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
