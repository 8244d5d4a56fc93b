/* Switchboard agent inbox (/demo/agent?token=AGENT_JWT): the live conversation
 * list (GET /api/v1/conversations, then conversation:new / conversation:updated)
 * and one conversation at a time (join, history, send, typing, read receipts),
 * over the native WebSocket protocol (window.Switchboard from /widget.js). */
(function () {
  "use strict";
  var SB = window.Switchboard;
  var el = SB.el;
  var $ = function (id) {
    return document.getElementById(id);
  };
  var token = new URLSearchParams(location.search).get("token") || "";
  var convs = {}; /* id -> Conversation */
  var unread = {}; /* id -> true */
  var current = null; /* the open conversation's id */
  var timeline = null;
  var rows = {};
  var joined = false;
  var readUpTo = 0;
  var markedUpTo = 0;
  var typers = {};
  var list = $("conversations");
  var log = $("messages");
  var input = $("reply");

  function setState(s, why) {
    $("state").setAttribute("data-state", s);
    $("state-text").textContent = why ? "Offline: " + why : SB.STATE_TEXT[s];
    document.body.setAttribute("data-state", s);
  }
  if (!token) {
    setState("offline", "open this page with ?token=<agent token>");
    return;
  }

  function activity(c) {
    return (c.last_message && c.last_message.created_at) || c.updated_at || c.created_at || "";
  }
  function channelBadge(channel) {
    var ch = channel === "whatsapp" ? "whatsapp" : "web";
    return el("span", { class: "channel " + ch, "data-channel": ch }, ch === "whatsapp" ? "WhatsApp" : "Web");
  }
  function renderList() {
    var ids = Object.keys(convs).sort(function (a, b) {
      return activity(convs[b]).localeCompare(activity(convs[a]));
    });
    var focused = document.activeElement && document.activeElement.getAttribute("data-conversation");
    list.textContent = "";
    ids.forEach(function (id) {
      var c = convs[id];
      var li = el("li");
      var b = el("button", { type: "button", class: "conv" + (unread[id] ? " unread" : ""), "data-conversation": id });
      if (id === current) b.setAttribute("aria-current", "true");
      var line1 = el("span", { class: "line1" });
      line1.append(
        el("span", { class: "name" }, (c.customer && c.customer.name) || id),
        channelBadge(c.channel),
        el("span", { class: "when" }, SB.clock(activity(c))),
      );
      var preview = c.last_message ? (c.last_message.sender ? c.last_message.sender.name + ": " : "") + c.last_message.text : "No messages yet";
      b.append(line1, el("span", { class: "preview" }, preview));
      if (unread[id]) b.appendChild(el("span", { class: "sr" }, ", unread"));
      b.addEventListener("click", function () {
        open(id);
      });
      li.appendChild(b);
      list.appendChild(li);
      if (focused === id) b.focus();
    });
    $("empty-list").hidden = ids.length > 0;
  }
  function upsert(c) {
    if (!c || !c.id) return;
    var known = convs[c.id];
    if (known && activity(known) > activity(c)) return; /* an older update */
    convs[c.id] = c;
    if (c.id !== current && c.last_message && (!known || !known.last_message || known.last_message.id !== c.last_message.id)) {
      if (!c.last_message.sender || c.last_message.sender.id !== conn.me) unread[c.id] = true;
    }
    renderList();
    if (c.id === current) renderHead();
  }
  function loadList() {
    return fetch("/api/v1/conversations?limit=100", { headers: { authorization: "Bearer " + token } })
      .then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) throw new Error((body.error && body.error.message) || "HTTP " + r.status);
          return body;
        });
      })
      .then(function (body) {
        (body.conversations || []).forEach(function (c) {
          var known = convs[c.id];
          if (!known || activity(known) <= activity(c)) convs[c.id] = c;
        });
        renderList();
      })
      .catch(function (e) {
        setState("offline", "inbox: " + e.message);
      });
  }

  /* ---- one conversation ------------------------------------------------ */

  function staff(m) {
    return m.sender && m.sender.role !== "customer";
  }
  function mine(m) {
    return m.sender && m.sender.id === conn.me;
  }
  function renderHead() {
    var c = convs[current] || { id: current };
    $("view-title").textContent = (c.customer && c.customer.name) || current;
    var badge = $("view-channel");
    var ch = c.channel === "whatsapp" ? "whatsapp" : "web";
    badge.className = "channel " + ch;
    badge.setAttribute("data-channel", ch);
    badge.textContent = ch === "whatsapp" ? "WhatsApp" : "Web";
  }
  function row(m) {
    var li = el("li", { class: staff(m) ? "staff" : "customer", "data-id": m.id, "data-offset": String(m.offset) });
    li.append(el("span", { class: "who" }, m.sender ? m.sender.name : ""), el("span", { class: "text" }, m.text));
    var meta = el("span", { class: "meta" }, SB.clock(m.created_at));
    if (staff(m)) {
      var s = m.offset <= readUpTo ? "read" : "sent";
      meta.appendChild(el("span", { class: "receipt", "data-status": s }, " · " + (s === "read" ? "Read" : "Sent")));
    }
    li.appendChild(meta);
    return li;
  }
  function show(m) {
    if (!timeline || m.conversation_id !== current || !timeline.add(m)) return false;
    var li = row(m);
    rows[m.id] = li;
    var next = timeline.before(m);
    var stick = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
    log.insertBefore(li, next ? rows[next.id] : null);
    if (stick || mine(m)) log.scrollTop = log.scrollHeight;
    if (!staff(m)) {
      delete typers[m.sender.id];
      renderTyping();
    }
    return true;
  }
  function renderReceipts() {
    var spans = log.querySelectorAll(".receipt");
    for (var i = 0; i < spans.length; i++) {
      var off = Number(spans[i].closest("li").getAttribute("data-offset"));
      var s = off <= readUpTo ? "read" : "sent";
      if (spans[i].getAttribute("data-status") !== s) {
        spans[i].setAttribute("data-status", s);
        spans[i].textContent = " · " + (s === "read" ? "Read" : "Sent");
      }
    }
  }
  function renderTyping() {
    var names = Object.keys(typers).map(function (k) {
      return typers[k];
    });
    $("typing").textContent = names.length ? names.join(", ") + (names.length > 1 ? " are" : " is") + " typing…" : "";
  }
  function markRead() {
    if (!joined || !timeline || document.visibilityState === "hidden") return;
    for (var i = timeline.list.length - 1; i >= 0; i--) {
      var m = timeline.list[i];
      if (!staff(m)) {
        if (m.offset > markedUpTo) {
          markedUpTo = m.offset;
          conn.tell("mark_read", { conversation_id: current, message_id: m.id });
        }
        return;
      }
    }
  }
  function join() {
    if (!current || conn.state !== "online") return;
    var id = current;
    var payload = { conversation_id: id };
    if (timeline.last > 0) payload.since_offset = timeline.last;
    conn
      .call("join_conversation", payload)
      .then(function (ack) {
        if (id !== current) return;
        joined = true;
        (ack.messages || []).forEach(show);
        log.scrollTop = log.scrollHeight;
        markRead();
      })
      .catch(function (e) {
        if (e.code !== "disconnected") $("typing").textContent = "Could not open: " + e.message;
      });
  }
  function open(id) {
    if (current && current !== id && joined) conn.tell("leave_conversation", { conversation_id: current });
    if (current !== id) {
      current = id;
      timeline = new SB.Timeline();
      rows = {};
      readUpTo = 0;
      markedUpTo = 0;
      typers = {};
      joined = false;
      log.textContent = "";
      renderTyping();
      join();
    }
    delete unread[id];
    renderHead();
    renderList();
    $("placeholder").hidden = true;
    $("view-head").hidden = false;
    log.hidden = false;
    $("composer").hidden = false;
    document.body.classList.add("viewing");
    history.replaceState(null, "", "?token=" + encodeURIComponent(token) + "&conversation=" + encodeURIComponent(id));
    input.focus();
  }

  var conn = new SB.Connection({
    token: token,
    onState: function (s) {
      if (s !== "online") {
        joined = false;
        typers = {};
        renderTyping();
        setState(s);
      }
    },
    onReady: function () {
      setState("online");
      loadList();
      join();
    },
    onEvent: function (type, d) {
      if (type === "conversation:new" || type === "conversation:updated") upsert(d.conversation);
      else if (type === "message:new") {
        if (show(d) && !staff(d)) markRead();
      } else if (type === "user_typing" && d.conversation_id === current && d.user_id !== conn.me) {
        if (d.typing) {
          var c = convs[current];
          typers[d.user_id] = c && c.customer && c.customer.id === d.user_id ? c.customer.name : "Someone";
        } else delete typers[d.user_id];
        renderTyping();
      } else if (type === "message:status" && d.conversation_id === current && d.status === "read") {
        var m = timeline && timeline.byId[d.message_id];
        readUpTo = Math.max(readUpTo, m ? m.offset : timeline ? timeline.last : 0);
        renderReceipts();
      }
    },
  });

  /* Composer: Enter sends, Shift+Enter is a new line; typing start/stop. */
  var stopTyping = SB.reportTyping(conn, input, function () {
    return joined ? current : null;
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("composer").addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text || !current) return;
    stopTyping();
    var id = current;
    var attempt = { conversation_id: id, text: text, client_msg_id: SB.uid() };
    input.value = "";
    (function sendIt(tries) {
      conn
        .call("send_message", attempt)
        .then(function (ack) {
          show(ack.message);
        })
        .catch(function (err) {
          /* Retried with the same client_msg_id once back online: stored once. */
          if ((err.code === "disconnected" || err.code === "timeout") && tries < 20) {
            setTimeout(function () {
              sendIt(tries + 1);
            }, 1000);
          } else $("typing").textContent = "Not sent: " + (err.message || err.code);
        });
    })(0);
  });
  $("back").addEventListener("click", function () {
    document.body.classList.remove("viewing");
    var b = list.querySelector('[data-conversation="' + CSS.escape(current || "") + '"]');
    if (b) b.focus();
  });
  document.addEventListener("visibilitychange", markRead);

  var wanted = new URLSearchParams(location.search).get("conversation");
  loadList().then(function () {
    if (wanted) open(wanted);
  });
  conn.start();
})();
