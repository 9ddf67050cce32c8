// b2ner view: paging and the label filter. Without JavaScript every document is shown, all labels highlighted.
(function () {
  "use strict";
  var docs = document.getElementById("docs");
  var articles = docs.querySelectorAll("article.doc");
  var size = parseInt(docs.getAttribute("data-page-size"), 10) || 50;
  var pages = Math.max(1, Math.ceil(articles.length / size));
  var pager = document.getElementById("pager");
  var info = document.getElementById("page-info");
  var number = document.getElementById("page-number");
  var prev = document.getElementById("prev");
  var next = document.getElementById("next");
  var page = 0;

  function setPage(target, hidden) {
    var end = Math.min(articles.length, (target + 1) * size);
    for (var i = target * size; i < end; i++) articles[i].hidden = hidden;
  }

  function show(target) {
    target = Math.min(Math.max(target, 0), pages - 1);
    if (target !== page) {
      setPage(page, true);
      setPage(target, false);
      page = target;
    }
    var first = articles.length ? page * size + 1 : 0;
    var last = Math.min(articles.length, (page + 1) * size);
    info.textContent = "of " + pages + " (documents " + first + "\u2013" + last + " of " + articles.length + ")";
    number.value = String(page + 1);
    prev.disabled = page === 0;
    next.disabled = page === pages - 1;
  }

  if (pages > 1) {
    for (var i = size; i < articles.length; i++) articles[i].hidden = true;
    number.max = String(pages);
    pager.hidden = false;
    prev.addEventListener("click", function () { show(page - 1); window.scrollTo(0, 0); });
    next.addEventListener("click", function () { show(page + 1); window.scrollTo(0, 0); });
    number.addEventListener("change", function () { show(parseInt(number.value, 10) - 1 || 0); });
    show(0);
  }

  var boxes = document.querySelectorAll("#legend input[type=checkbox]");
  for (var j = 0; j < boxes.length; j++) {
    boxes[j].addEventListener("change", function (event) {
      var box = event.target;
      document.body.classList.toggle("off-" + box.getAttribute("data-key"), !box.checked);
    });
  }
})();
