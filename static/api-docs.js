/* The API docs page (templates/api_docs.html): #swagger-ui is aria-busy while Swagger UI
 * fetches and draws the schema; this takes the mark away once it has drawn it (or an error),
 * so assistive technology, and the accessibility sweep, meet the finished page. */
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  if (!root) return;
  function drawn() {
    return root.querySelector(".information-container, .errors-wrapper") !== null;
  }
  new MutationObserver(function (records, observer) {
    if (drawn()) {
      root.removeAttribute("aria-busy");
      observer.disconnect();
    }
  }).observe(root, { childList: true, subtree: true });
})();
