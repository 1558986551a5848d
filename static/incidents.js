/* The incident console's tool switch: a tool no agent's rule names (not among the known
 * tools offered in the datalist) needs its own confirmation, so the checkbox appears, and is
 * required, only then. The server refuses an unknown tool without it either way (this is a
 * convenience: without JavaScript the checkbox appears after that refusal). */
(function () {
  "use strict";

  var input = document.getElementById("target-tool");
  var confirm = document.querySelector("[data-unknown-tool]");
  if (!input || !confirm) return;
  var box = confirm.querySelector("input[type=checkbox]");
  var name = confirm.querySelector("[data-unknown-tool-name]");
  var known = new Set(
    Array.prototype.map.call(document.querySelectorAll("#known-tools option"), function (option) {
      return option.value;
    })
  );

  function update() {
    var value = input.value.trim();
    var unknown = value !== "" && !known.has(value);
    confirm.hidden = !unknown;
    box.required = unknown;
    if (!unknown) box.checked = false;
    if (name) name.textContent = value;
  }

  input.addEventListener("input", update);
  update();
})();
