/* Scroll regions a keyboard can reach (WCAG 2.1.1; axe's scrollable-region-focusable).
 *
 * A wide table (.table-wrap) or a long block of JSON (pre) scrolls within itself rather than
 * widening a phone's page. A mouse or a finger scrolls it; a keyboard can only if it can be
 * focused. So, while such a box really scrolls, it gets tabindex="0", role="region" and a
 * name taken from its table's caption or its section's heading ("Tool rules (scrolls)"); when
 * it stops scrolling (a wider window), they are taken away again, so that no empty tab stop
 * is left. Only what this script added is ever removed (marked data-scroll-region).
 *
 * Re-checked when the window is resized, when the page's content changes (htmx swaps, the
 * live queue) and when a <details> opens. Every page loads it from base.html. */
(function () {
  "use strict";

  var CANDIDATES = ".table-wrap, pre, .arg-text, table";
  var MARK = "data-scroll-region";

  function scrolls(el) {
    var style = window.getComputedStyle(el);
    var x = /(auto|scroll)/.test(style.overflowX) && el.scrollWidth > el.clientWidth + 1;
    var y = /(auto|scroll)/.test(style.overflowY) && el.scrollHeight > el.clientHeight + 1;
    return x || y;
  }

  function text(el) {
    return el ? el.textContent.replace(/\s+/g, " ").trim() : "";
  }

  // The box's name: its table's caption, the term it describes (<dt> before a <dd>), its
  // figure's caption or its section's heading, else what it is.
  function nameFor(el) {
    var caption = el.querySelector("caption");
    if (caption && text(caption)) return text(caption);
    var dd = el.closest("dd");
    if (dd && dd.previousElementSibling && dd.previousElementSibling.tagName === "DT") {
      return text(dd.previousElementSibling);
    }
    var figure = el.closest("figure");
    if (figure && text(figure.querySelector("figcaption"))) {
      return text(figure.querySelector("figcaption"));
    }
    var section = el.closest("section, .panel, .card, details");
    var heading = section && section.querySelector("h1, h2, h3, h4, summary");
    if (text(heading)) return text(heading);
    return el.matches(".table-wrap, table") ? "Table" : "Text";
  }

  function update() {
    var boxes = document.querySelectorAll(CANDIDATES);
    for (var i = 0; i < boxes.length; i++) {
      var el = boxes[i];
      var marked = el.hasAttribute(MARK);
      if (scrolls(el)) {
        if (marked || el.hasAttribute("tabindex")) continue;
        el.setAttribute(MARK, "");
        el.setAttribute("tabindex", "0");
        if (!el.hasAttribute("role")) {
          el.setAttribute("role", "region");
          el.setAttribute(MARK, "role");
        }
        if (!el.hasAttribute("aria-label") && !el.hasAttribute("aria-labelledby")) {
          el.setAttribute("aria-label", nameFor(el) + " (scrolls)");
          el.setAttribute(MARK, el.getAttribute(MARK) + " label");
        }
      } else if (marked) {
        var added = el.getAttribute(MARK);
        el.removeAttribute("tabindex");
        if (added.indexOf("role") !== -1) el.removeAttribute("role");
        if (added.indexOf("label") !== -1) el.removeAttribute("aria-label");
        el.removeAttribute(MARK);
      }
    }
  }

  var pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(function () {
      pending = false;
      update();
    });
  }

  update();
  window.addEventListener("resize", schedule);
  window.addEventListener("load", schedule);
  document.addEventListener("toggle", schedule, true); // <details> opening
  new MutationObserver(function (records) {
    // Our own attribute changes are not content changes.
    for (var i = 0; i < records.length; i++) {
      if (records[i].type === "childList" || records[i].attributeName === "open") {
        schedule();
        return;
      }
    }
  }).observe(document.body, { childList: true, subtree: true, attributes: true, attributeFilter: ["open"] });
})();
