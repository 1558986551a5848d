/* Airlock live pages: keeps the queue (and an action's page) current over a websocket, and
 * adds keyboard shortcuts. No inline script anywhere: configuration comes from data-
 * attributes on the live region:
 *
 *   data-live-socket   websocket path, e.g. /ws/queue/
 *   data-live-refresh  the page's own URL (with its filters); ?partial=1 returns the fragment
 *   data-live-kind     "queue", "decided" or "action"
 *   data-live-action   (action pages) the action id whose events matter
 *
 * Channel-layer delivery is at most once, so messages are only a hint: on every message,
 * on every (re)connect and every RESYNC_MS the region is re-read from the server. The
 * server sends {"type": "resync"} when its connection to Redis came back after an outage
 * (the socket itself stayed open, but events published meanwhile never reached it). */
(function () {
  "use strict";

  var RESYNC_MS = 30000;
  // Events within this window (plus a little jitter, so that many open pages do not all
  // ask at once) are coalesced into one re-read.
  var COALESCE_MS = 200;
  var MAX_BACKOFF_MS = 15000;
  var LEFT_CARD_TTL_MS = 60000;

  var region = document.querySelector("[data-live-socket]");
  var statusEl = document.querySelector("[data-live-status]");
  var selectedId = null;

  function setStatus(text, state) {
    if (!statusEl) return;
    statusEl.hidden = false;
    statusEl.textContent = text;
    statusEl.dataset.state = state;
  }

  // --- refreshing the region from the server ------------------------------------------------

  var refreshTimer = null;
  var refreshing = false;
  var refreshAgain = false;
  var leftSeenAt = new Map(); // id of a card that left the queue -> when it was first shown

  function scheduleRefresh() {
    // Not a debounce: a steady stream of events must not postpone the re-read forever.
    if (refreshTimer !== null) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      refresh();
    }, COALESCE_MS + Math.random() * COALESCE_MS);
  }

  function shownIds() {
    // Pending cards on the page, plus cards that recently left the queue (still shown for
    // a minute so the reviewer sees what became of them).
    var now = Date.now();
    var ids = [];
    region.querySelectorAll(".card[data-action-id]").forEach(function (card) {
      var id = card.dataset.actionId;
      if (card.classList.contains("card--compact")) {
        if (!leftSeenAt.has(id)) leftSeenAt.set(id, now);
        if (now - leftSeenAt.get(id) > LEFT_CARD_TTL_MS) return;
      }
      ids.push(id);
    });
    // Cards a kill switch stopped, collapsed into one line per switch: kept for as long.
    region.querySelectorAll("[data-stopped-ids]").forEach(function (line) {
      line.dataset.stoppedIds.split(",").forEach(function (id) {
        if (!leftSeenAt.has(id)) leftSeenAt.set(id, now);
        if (now - leftSeenAt.get(id) <= LEFT_CARD_TTL_MS) ids.push(id);
      });
    });
    return ids;
  }

  function refreshUrl() {
    var url = new URL(region.dataset.liveRefresh, window.location.href);
    url.searchParams.set("partial", "1");
    if (region.dataset.liveKind === "queue") url.searchParams.set("shown", shownIds().join(","));
    return url.toString();
  }

  function refresh() {
    if (refreshing || region.querySelector(".htmx-request")) {
      // A refresh or a decision is in flight: read again once it is done.
      refreshAgain = true;
      if (!refreshing) setTimeout(refresh, 300);
      return;
    }
    refreshing = true;
    refreshAgain = false;
    fetch(refreshUrl(), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.headers.get("X-Airlock-Fragment")) {
          // Not our fragment (e.g. redirected to the login page): load the page for real.
          window.location.reload();
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== undefined) swapPreservingInput(html);
      })
      .catch(function () {
        /* offline: the next reconnect or resync reads again */
      })
      .then(function () {
        refreshing = false;
        if (refreshAgain) scheduleRefresh();
      });
  }

  // Replaces the region's content with the server's fresh rendering, without disturbing what
  // the person is doing: a card they are working on (focus inside, a form open, text typed)
  // is kept as it is unless its status changed; other cards keep the notice of the person's
  // own last decision. Everything happens in one task, so no keystroke lands in between.
  // --- announcing and highlighting what changed -------------------------------------------

  var announcer = document.querySelector("[data-live-announcer]");
  var NEW_CARD_MS = 4000;

  function pendingCards(root) {
    return Array.prototype.slice.call(
      root.querySelectorAll(".cards:not(.cards--left) .card[data-action-id]")
    );
  }

  function describe(card) {
    var tool = card.querySelector(".card-title code");
    var risk = card.querySelector(".badge-risk");
    return (tool ? tool.textContent : "action") + " #" + card.dataset.actionId +
      (risk ? " (" + risk.textContent.trim() + " risk)" : "");
  }

  function announce(text) {
    if (!announcer || !text) return;
    // A fresh text node each time, so a repeated message is read again.
    announcer.textContent = "";
    setTimeout(function () { announcer.textContent = text; }, 50);
  }

  function noteChanges(before) {
    var arrived = [];
    var arrivedCards = [];
    pendingCards(region).forEach(function (card) {
      if (before.has(card.dataset.actionId)) return;
      arrived.push(describe(card));
      arrivedCards.push(card);
      card.classList.add("card--new");
      setTimeout(function () { card.classList.remove("card--new"); }, NEW_CARD_MS);
    });
    var decided = [];
    region.querySelectorAll(".cards--left .card[data-action-id]").forEach(function (card) {
      if (!before.has(card.dataset.actionId)) return;
      var status = card.querySelector(".badge-status");
      decided.push(describe(card) + " " + (status ? status.textContent.trim() : "decided"));
    });
    var stopped = region.querySelectorAll("[data-stopped-ids]").length;
    var parts = [];
    if (arrived.length) parts.push(arrived.length + " new: " + arrived.join(", ") + ".");
    if (decided.length) parts.push("Decided: " + decided.join(", ") + ".");
    if (stopped) parts.push("Actions were stopped by a kill switch.");
    announce(parts.join(" "));
    updateTitle();
    // For other scripts on the page (static/notify.js: desktop notifications).
    if (arrivedCards.length) {
      region.dispatchEvent(
        new CustomEvent("airlock:cards-arrived", { bubbles: true, detail: { cards: arrivedCards } })
      );
    }
  }

  // The tab title shows the pending count: "(3) Queue · Airlock".
  function updateTitle() {
    var count = document.querySelector("[data-queue-count]");
    if (!count) return;
    document.title = "(" + count.textContent.trim() + ") " +
      document.title.replace(/^\(\d+\) /, "");
  }

  function swapPreservingInput(html) {
    var before = new Set(pendingCards(region).map(function (card) { return card.dataset.actionId; }));
    var fresh = document.createElement("template");
    fresh.innerHTML = html;
    var active = region.contains(document.activeElement) ? document.activeElement : null;
    var selection = active && typeof active.selectionStart === "number"
      ? [active.selectionStart, active.selectionEnd, active.selectionDirection]
      : null;

    // [data-live-keep]: any page's item (with an id and data-status) kept while worked on.
    region.querySelectorAll(".card[data-action-id], [data-bulk], [data-live-keep]").forEach(function (card) {
      if (!isBusy(card)) return;
      var replacement = fresh.content.getElementById(card.id);
      if (replacement && replacement.dataset.status === card.dataset.status) {
        replacement.replaceWith(card);
      }
    });
    var notices = collectNotices();

    region.replaceChildren(fresh.content);

    restoreNotices(notices);
    if (active && region.contains(active)) {
      active.focus({ preventScroll: true });
      if (selection) active.setSelectionRange(selection[0], selection[1], selection[2]);
    }
    markSelected();
    if (region.dataset.liveKind === "queue") noteChanges(before);
    if (window.htmx) window.htmx.process(region);
    // How many times the region was re-read: for people debugging, and for tests to wait on.
    region.dataset.liveSynced = String(Number(region.dataset.liveSynced || 0) + 1);
  }

  function isBusy(card) {
    if (card.contains(document.activeElement)) return true;
    if (card.querySelector("details[data-form][open]") || card.matches("details[open]")) return true;
    return Array.prototype.some.call(
      card.querySelectorAll("textarea, input[type=text]"),
      function (field) {
        return field.value !== field.defaultValue;
      }
    );
  }

  function collectNotices() {
    var notices = [];
    region.querySelectorAll(".card[data-action-id] > .notice").forEach(function (notice) {
      var card = notice.parentElement;
      notices.push({ id: card.id, status: card.dataset.status, node: notice });
    });
    return notices;
  }

  function restoreNotices(notices) {
    notices.forEach(function (item) {
      var card = document.getElementById(item.id);
      if (!card || !region.contains(card) || card.dataset.status !== item.status) return;
      var head = card.querySelector(":scope > .card-head");
      if (head && !card.querySelector(":scope > .notice")) head.after(item.node);
    });
  }

  // --- the websocket ----------------------------------------------------------------------

  var attempts = 0;

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket;
    try {
      socket = new WebSocket(scheme + window.location.host + region.dataset.liveSocket);
    } catch (error) {
      reconnectLater();
      return;
    }
    socket.addEventListener("open", function () {
      attempts = 0;
      setStatus("live", "live");
      scheduleRefresh(); // catch up on whatever happened while disconnected
    });
    socket.addEventListener("message", function (event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (message.type === "hello") return;
      if (message.type === "resync") {
        scheduleRefresh(); // events were lost while the server was cut off from Redis
        return;
      }
      var only = region.dataset.liveAction;
      if (only && message.action_id !== undefined && String(message.action_id) !== only) return;
      scheduleRefresh();
    });
    socket.addEventListener("close", function (event) {
      setStatus("reconnecting…", "down");
      if (event.code === 4401) scheduleRefresh(); // session gone? the refresh will tell
      reconnectLater();
    });
  }

  function reconnectLater() {
    var delay = Math.min(MAX_BACKOFF_MS, 500 * Math.pow(2, attempts));
    attempts += 1;
    setTimeout(connect, delay / 2 + Math.random() * delay / 2);
  }

  // --- keyboard: j/k move, a approve, r reject, e edit, o open ----------------------------

  function cards() {
    return Array.prototype.slice.call(
      document.querySelectorAll(".cards:not(.cards--left) .card[data-action-id]")
    );
  }

  function markSelected() {
    document.querySelectorAll(".card.is-selected").forEach(function (card) {
      card.classList.remove("is-selected");
    });
    if (selectedId === null) return;
    var card = document.getElementById("card-" + selectedId);
    if (card) card.classList.add("is-selected");
  }

  function selected() {
    return selectedId === null ? null : document.getElementById("card-" + selectedId);
  }

  function move(step) {
    var list = cards();
    if (!list.length) return;
    var index = list.indexOf(selected());
    index = index < 0 ? 0 : Math.max(0, Math.min(list.length - 1, index + step));
    selectedId = list[index].dataset.actionId;
    markSelected();
    list[index].focus({ preventScroll: true });
    list[index].scrollIntoView({ block: "nearest" });
  }

  function openForm(card, name) {
    var details = card.querySelector('details[data-form="' + name + '"]');
    if (!details) return;
    details.open = true;
    var field = details.querySelector("textarea, input[type=text]");
    if (field) field.focus();
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target.closest && target.closest("input, textarea, select, [contenteditable]")) {
      if (event.key === "Escape") target.blur();
      return;
    }
    var card = selected();
    switch (event.key) {
      case "j":
        move(1);
        break;
      case "k":
        move(-1);
        break;
      case "a":
        var approve = card && card.querySelector('[data-shortcut="approve"]');
        if (!approve) break;
        // A high or critical action is not approved by one stray key: ask first.
        if (card.dataset.risk === "high" || card.dataset.risk === "critical") {
          if (!window.confirm("Approve " + describe(card) + "?")) break;
        }
        approve.click();
        break;
      case "r":
        if (card) openForm(card, "reject");
        break;
      case "e":
        if (card) openForm(card, "edit");
        break;
      case "o":
        var link = card && card.querySelector(".card-title a");
        if (link) window.location.href = link.href;
        break;
      default:
        return;
    }
    event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    var card = event.target.closest && event.target.closest(".cards .card[data-action-id]");
    if (card) {
      selectedId = card.dataset.actionId;
      markSelected();
    }
  });

  // After a decision on a card, the next pending card takes the focus (and the selection),
  // so a keyboard user goes on without hunting for their place.
  document.addEventListener("htmx:afterSwap", function (event) {
    markSelected();
    var id = event.detail && event.detail.target && event.detail.target.id;
    var card = id && document.getElementById(id);
    if (!card || !card.classList.contains("card") || card.querySelector(".notice--error")) return;
    if (!region || !region.contains(card)) return;
    var list = cards();
    var next = list.slice(list.indexOf(card) + 1).concat(list.slice(0, list.indexOf(card)))
      .filter(function (other) { return other.dataset.status === "pending" && other !== card; })[0];
    var notice = card.querySelector(".notice");
    announce(notice ? notice.textContent.trim() : "");
    if (!next) return;
    selectedId = next.dataset.actionId;
    markSelected();
    next.focus({ preventScroll: false });
  });
  document.addEventListener("htmx:responseError", function () {
    setStatus("request failed, reload the page", "down");
  });

  // Filters apply as soon as one changes (the Filter button remains for pages without JS).
  document.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
    select.addEventListener("change", function () {
      select.form.requestSubmit();
    });
  });

  if (region) {
    updateTitle();
    connect();
    setInterval(scheduleRefresh, RESYNC_MS);
  }
})();
