/* Desktop notifications on the queue: while the queue is open in a background tab, a new
 * card at or above the person's chosen risk shows a notification; clicking it brings the
 * tab forward and focuses the card.
 *
 * - On or off: the browser's permission (asked only when the person clicks the button,
 *   never on load) and, per browser, the person's "turn off" (localStorage). The lowest
 *   risk that notifies follows the person: it is saved on the server (POST, JSON answer).
 * - New cards: static/live.js dispatches "airlock:cards-arrived" on the queue region when a
 *   re-read (prompted by the queue's websocket) brings cards that were not there before.
 * - The text comes from the rendered card (textContent), and a notification's title and
 *   body are plain text: agent-supplied text is never interpreted as HTML. */
(function () {
  "use strict";

  var RISKS = ["low", "medium", "high", "critical"];
  var SUMMARY_CHARS = 180;

  var panel = document.querySelector("[data-desktop-notify]");
  // No way to notify (no Notification API, or a page not served over HTTPS or from
  // localhost, where browsers refuse the permission): nothing to offer.
  if (!panel || !("Notification" in window) || !window.isSecureContext) return;

  var toggle = panel.querySelector("[data-notify-toggle]");
  var form = panel.querySelector("[data-notify-form]");
  var select = form.querySelector("select[name=min_risk]");
  var saveButton = form.querySelector("[data-notify-save]");
  var statusEl = panel.querySelector("[data-notify-status]");
  var offKey = "airlock.desktop-notifications-off." + panel.dataset.notifyPerson;

  function turnedOffHere() {
    try {
      return window.localStorage.getItem(offKey) === "1";
    } catch (error) {
      return false;
    }
  }

  function setTurnedOff(off) {
    try {
      if (off) window.localStorage.setItem(offKey, "1");
      else window.localStorage.removeItem(offKey);
    } catch (error) {
      /* storage unavailable: the permission alone decides */
    }
  }

  function isOn() {
    return Notification.permission === "granted" && !turnedOffHere();
  }

  function minRisk() {
    return RISKS.indexOf(select.value) < 0 ? "low" : select.value;
  }

  function render(message) {
    var on = isOn();
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
    toggle.textContent = on ? "Turn off desktop notifications" : "Turn on desktop notifications";
    form.hidden = !on;
    if (message) {
      statusEl.textContent = message;
    } else if (Notification.permission === "denied") {
      statusEl.textContent =
        "This browser blocks notifications from Airlock: allow them in the site settings.";
    } else if (on) {
      statusEl.textContent =
        "On: new cards of " + minRisk() + " risk" + (minRisk() === "critical" ? "" : " and above") +
        " notify you while this tab is in the background.";
    } else {
      statusEl.textContent = "";
    }
  }

  toggle.addEventListener("click", function () {
    // What the button says it does, even if the permission changed since it was drawn
    // (say, allowed in the site settings meanwhile): "Turn on" turns on.
    if (toggle.getAttribute("aria-pressed") === "true") {
      setTurnedOff(true);
      render("Desktop notifications are off in this browser.");
      return;
    }
    setTurnedOff(false);
    if (Notification.permission === "granted") {
      render();
      return;
    }
    // Asked here, on the person's click: browsers ignore (or punish) asking on load.
    var asked = Notification.requestPermission(function () { render(); });
    if (asked && typeof asked.then === "function") asked.then(function () { render(); });
  });

  // The threshold is saved as soon as it changes (the Save button remains for keyboards
  // and for when saving failed).
  function save() {
    var body = new FormData(form);
    saveButton.disabled = true;
    fetch(form.action, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) throw new Error(data.detail || "Not saved.");
          return data;
        });
      })
      .then(function (data) {
        select.value = data.min_risk;
        render();
      })
      .catch(function (error) {
        render("Not saved: " + (error && error.message ? error.message : "try again."));
      })
      .then(function () {
        saveButton.disabled = false;
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    save();
  });
  select.addEventListener("change", save);

  // --- notifying -------------------------------------------------------------------------

  function text(card, selector) {
    var node = card.querySelector(selector);
    return node ? node.textContent.replace(/\s+/g, " ").trim() : "";
  }

  function focusCard(id) {
    var card = document.getElementById("card-" + id);
    if (!card) {
      // Decided or gone from this page meanwhile: its own page says what became of it.
      window.location.href = "/actions/" + encodeURIComponent(id);
      return;
    }
    card.scrollIntoView({ block: "center" });
    card.focus({ preventScroll: true });
    card.click(); // selects it for the keyboard shortcuts (static/live.js)
  }

  function notify(card) {
    var id = card.dataset.actionId;
    var risk = card.dataset.risk || "";
    var summary = text(card, ".card-summary");
    if (summary.length > SUMMARY_CHARS) summary = summary.slice(0, SUMMARY_CHARS - 1) + "…";
    var body = text(card, ".card-agent-name") + (summary ? ": " + summary : "");
    var notification = new Notification(
      risk + " risk · " + text(card, ".card-title code") + " #" + id,
      { body: body, tag: "airlock-card-" + id, lang: "en" }
    );
    notification.addEventListener("click", function () {
      window.focus();
      notification.close();
      focusCard(id);
    });
  }

  document.addEventListener("airlock:cards-arrived", function (event) {
    if (!isOn() || document.visibilityState !== "hidden") return;
    var threshold = RISKS.indexOf(minRisk());
    (event.detail && event.detail.cards || []).forEach(function (card) {
      if (RISKS.indexOf(card.dataset.risk) >= threshold) notify(card);
    });
  });

  panel.hidden = false;
  render();
})();
