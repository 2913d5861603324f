// Let long column names wrap inside a word: a <wbr> after each "_" of
// snake_case names (ess_per_1000_grads) and each "<" of orderings
// (mu0<mu1<mu2) in table headers, so that wide generated tables narrow their
// columns instead of scrolling sideways.
document.addEventListener("DOMContentLoaded", function () {
  var breakAfter = /([_<])/;
  document.querySelectorAll(".bd-content table th").forEach(function (cell) {
    var walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    var nodes = [];
    while (walker.nextNode()) {
      if (breakAfter.test(walker.currentNode.nodeValue)) nodes.push(walker.currentNode);
    }
    nodes.forEach(function (node) {
      // split() with a capturing group keeps the separators: [text, sep, text, ...]
      var parts = node.nodeValue.split(breakAfter);
      var fragment = document.createDocumentFragment();
      parts.forEach(function (part, i) {
        if (part) fragment.appendChild(document.createTextNode(part));
        if (i % 2 === 1 && i < parts.length - 1) fragment.appendChild(document.createElement("wbr"));
      });
      node.parentNode.replaceChild(fragment, node);
    });
  });
});
