/* Switchboard agent inbox (/demo/agent?token=AGENT_JWT&view=mine|unassigned|all):
 * one view of the conversation list (GET /api/v1/conversations, then
 * conversation:new / conversation:updated for that view, chosen with
 * subscribe_inbox) and one conversation at a time (join, history, replies and
 * private notes, typing, read receipts; claim, transfer, unassign, close,
 * reopen), over the native WebSocket protocol (window.Switchboard from /widget.js). */
(function () {
  "use strict";
  var SB = window.Switchboard;
  var el = SB.el;
  var age = SB.conversationAge;
  var supersedes = SB.supersedes;
  var $ = function (id) {
    return document.getElementById(id);
  };
  var params = new URLSearchParams(location.search);
  var token = params.get("token") || "";
  var VIEWS = ["mine", "unassigned", "all"];
  var EMPTY_TEXT = { mine: "Nothing assigned to you.", unassigned: "No unassigned conversations.", all: "No conversations yet." };
  var STATUS_TEXT = { open: "Open", pending: "Pending", closed: "Closed" };
  /* Where focus goes when the action that had it is hidden by its own effect. */
  var NEXT_FOCUS = { close: "reopen", reopen: "close", claim: "reply", unassign: "claim" };
  var view = VIEWS.indexOf(params.get("view")) >= 0 ? params.get("view") : "all";
  /* The current view's conversations (id -> Conversation), their unread counts,
     and for each the offset its count runs to. */
  var convs = {};
  var counts = {};
  var countedTo = {};
  var listGeneration = 0;
  var loading = null;
  var reloadAfter = false;
  var agents = [];
  var availability = null; /* what this agent chose on this page, once it chose */
  var current = null; /* the open conversation's id */
  var shown = null; /* the open conversation as last heard */
  var timeline = null;
  var rows = {};
  var joined = false;
  var readUpTo = 0;
  var markedUpTo = 0;
  var typers = {};
  var list = $("conversations");
  var log = $("messages");
  var input = $("reply");
  var noteToggle = $("private");
  var availableSwitch = $("available");
  var tabs = Array.prototype.slice.call(document.querySelectorAll("[role=tab]"));

  function setState(s, why) {
    $("state").setAttribute("data-state", s);
    $("state-text").textContent = why ? "Offline: " + why : SB.STATE_TEXT[s];
    document.body.setAttribute("data-state", s);
  }
  if (!token) {
    setState("offline", "open this page with ?token=<agent token>");
    return;
  }

  function api(path) {
    return fetch(path, { headers: { authorization: "Bearer " + token } }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error((body.error && body.error.message) || "HTTP " + r.status);
        return body;
      });
    });
  }
  function rememberLocation() {
    var q = new URLSearchParams({ token: token, view: view });
    if (current) q.set("conversation", current);
    history.replaceState(null, "", "?" + q.toString());
  }

  /* ---- conversation state ------------------------------------------------ */

  function activity(c) {
    return (c.last_message && c.last_message.created_at) || c.updated_at || c.created_at || "";
  }
  function lastOffset(c) {
    return c.last_message ? c.last_message.offset : 0;
  }
  function isMine(assignee) {
    return !!assignee && assignee.id === conn.me;
  }
  function fits(c) {
    if (view === "all") return true;
    if (c.status === "closed") return false;
    return view === "mine" ? isMine(c.assignee) : !c.assignee;
  }
  function customerName(c) {
    return (c.customer && c.customer.name) || c.id;
  }
  function assigneeText(a) {
    if (!a) return "Unassigned";
    return isMine(a) ? "You" : a.name;
  }

  /* The state of a conversation from an event or an operation's answer. */
  function apply(c, isNew) {
    if (!c || !c.id) return;
    if (c.id === current && supersedes(c, shown, false)) {
      shown = c;
      renderHead();
    }
    var known = convs[c.id];
    if (!supersedes(c, known, false)) return;
    if (!fits(c)) {
      if (known) forget(c.id);
      return;
    }
    convs[c.id] = c;
    count(c, known, isNew);
    renderList();
  }
  function forget(id) {
    delete convs[id];
    delete counts[id];
    delete countedTo[id];
    renderList();
  }
  /* Counts come from the server with the list; between loads every message
     the agent has not seen adds to them, so they stay right without a request
     per message. */
  function count(c, known, isNew) {
    var last = lastOffset(c);
    if (c.id === current) {
      counts[c.id] = 0;
      countedTo[c.id] = last;
      return;
    }
    /* It entered the view: only the server knows what this agent read of it. */
    if (!known && !isNew) return loadList();
    var from = countedTo[c.id] || 0;
    if (last <= from) return;
    if (!mine(c.last_message)) counts[c.id] = (counts[c.id] || 0) + (last - from);
    countedTo[c.id] = last;
  }
  function mergeList(found) {
    found.forEach(function (c) {
      if (!fits(c)) return;
      var known = convs[c.id];
      if (known && age(known) > age(c)) return;
      if (!known || age(c) > age(known)) convs[c.id] = c;
      counts[c.id] = c.id === current ? 0 : c.unread || 0;
      countedTo[c.id] = lastOffset(c);
    });
    renderList();
  }
  /* Mine and Unassigned leave closed conversations out, so those are asked for by status. */
  function listQueries() {
    var filter = { mine: "&assignee=me", unassigned: "&assignee=none", all: "" }[view];
    var statuses = view === "all" ? [""] : ["&status=open", "&status=pending"];
    return statuses.map(function (status) {
      return "/api/v1/conversations?limit=100" + filter + status;
    });
  }
  /* One request at a time; asked again meanwhile, it runs once more after. */
  function loadList() {
    if (loading) {
      reloadAfter = true;
      return loading;
    }
    var generation = listGeneration;
    $("inbox").setAttribute("aria-busy", "true");
    loading = Promise.all(listQueries().map(api))
      .then(function (answers) {
        if (generation !== listGeneration) return;
        mergeList(
          answers.reduce(function (all, body) {
            return all.concat(body.conversations || []);
          }, []),
        );
      })
      .catch(function (e) {
        setState("offline", "inbox: " + e.message);
      })
      .then(function () {
        loading = null;
        if (reloadAfter) {
          reloadAfter = false;
          return loadList();
        }
        if (generation === listGeneration) $("inbox").setAttribute("aria-busy", "false");
      });
    return loading;
  }
  /* The server's answer to subscribe_inbox comes first: a list fetched
     before it could miss a change that the subscription would not send. */
  function showView() {
    listGeneration++;
    convs = {};
    counts = {};
    countedTo = {};
    renderList();
    $("inbox").setAttribute("aria-busy", "true");
    var generation = listGeneration;
    return subscribe().then(function () {
      if (generation === listGeneration) return loadList();
    });
  }
  function subscribe() {
    return conn.call("subscribe_inbox", { view: view }).catch(function (e) {
      if (e.code !== "disconnected") setState("offline", "inbox updates: " + (e.message || e.code));
    });
  }

  /* ---- the list ------------------------------------------------------------ */

  function channelBadge(channel) {
    var ch = channel === "whatsapp" ? "whatsapp" : "web";
    return el("span", { class: "channel " + ch, "data-channel": ch }, ch === "whatsapp" ? "WhatsApp" : "Web");
  }
  function statusPill(status) {
    return el("span", { class: "pill", "data-status": status }, STATUS_TEXT[status] || status);
  }
  function preview(c) {
    var m = c.last_message;
    if (!m) return "No messages yet";
    return (m.private ? "Note · " : "") + (m.sender ? m.sender.name + ": " : "") + m.text;
  }
  function claimable(c) {
    return !c.assignee && c.status !== "closed";
  }
  function claimButton(c) {
    var b = el("button", { type: "button", class: "row-claim", "data-claim": c.id, "data-focus": c.id + " claim" }, "Claim");
    b.appendChild(el("span", { class: "sr" }, " conversation with " + customerName(c)));
    b.addEventListener("click", function () {
      open(c.id);
      claim();
    });
    return b;
  }
  function listRow(c) {
    var n = counts[c.id] || 0;
    var li = el("li", { class: claimable(c) ? "claimable" : "" });
    var b = el("button", {
      type: "button",
      class: "conv" + (n ? " unread" : ""),
      "data-conversation": c.id,
      "data-status": c.status,
      "data-focus": c.id,
    });
    if (c.assignee) b.setAttribute("data-assignee", c.assignee.id);
    if (c.id === current) b.setAttribute("aria-current", "true");
    var line1 = el("span", { class: "line1" });
    line1.append(el("span", { class: "name" }, customerName(c)), channelBadge(c.channel), el("span", { class: "when" }, SB.clock(activity(c))));
    if (n) line1.appendChild(el("span", { class: "count", "aria-hidden": "true" }, n > 99 ? "99+" : String(n)));
    var line2 = el("span", { class: "line2" });
    line2.append(statusPill(c.status), el("span", { class: "assignee" }, assigneeText(c.assignee)));
    b.append(line1, el("span", { class: "preview" }, preview(c)), line2);
    if (n) b.appendChild(el("span", { class: "sr" }, ", " + n + " unread"));
    b.addEventListener("click", function () {
      open(c.id);
    });
    li.appendChild(b);
    if (claimable(c)) li.appendChild(claimButton(c));
    return li;
  }
  function renderList() {
    var ids = Object.keys(convs).sort(function (a, b) {
      return activity(convs[b]).localeCompare(activity(convs[a]));
    });
    var focused = document.activeElement && document.activeElement.getAttribute("data-focus");
    list.textContent = "";
    ids.forEach(function (id) {
      list.appendChild(listRow(convs[id]));
    });
    var again = focused && list.querySelector('[data-focus="' + CSS.escape(focused) + '"]');
    if (again) again.focus();
    $("empty-list").hidden = ids.length > 0;
  }
  function renderTabs() {
    tabs.forEach(function (t) {
      var on = t.getAttribute("data-view") === view;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      if (on) $("inbox").setAttribute("aria-labelledby", t.id);
    });
    $("empty-list").textContent = EMPTY_TEXT[view];
  }
  function choose(v) {
    if (v === view) return;
    view = v;
    renderTabs();
    rememberLocation();
    showView();
  }

  /* ---- one conversation ------------------------------------------------ */

  function staff(m) {
    return m.sender && m.sender.role !== "customer";
  }
  function mine(m) {
    return !!m && !!m.sender && m.sender.id === conn.me;
  }
  function nameOf(userId) {
    var c = shown || convs[current];
    if (c && c.customer && c.customer.id === userId) return c.customer.name;
    var agent = agents.filter(function (a) {
      return a.id === userId;
    })[0];
    return agent ? agent.name : "Someone";
  }
  function renderHead() {
    var c = shown || { id: current };
    var before = document.activeElement;
    $("view-title").textContent = customerName(c);
    /* A widget visitor's email, as given in the pre-chat form. */
    var email = $("view-email");
    var address = c.customer && c.customer.email;
    email.hidden = !address;
    email.textContent = address || "";
    if (address) email.setAttribute("href", "mailto:" + address);
    else email.removeAttribute("href");
    var badge = $("view-channel");
    var ch = c.channel === "whatsapp" ? "whatsapp" : "web";
    badge.className = "channel " + ch;
    badge.setAttribute("data-channel", ch);
    badge.textContent = ch === "whatsapp" ? "WhatsApp" : "Web";
    var known = !!shown;
    var pill = $("view-status");
    pill.hidden = !known;
    pill.setAttribute("data-status", c.status || "");
    pill.textContent = STATUS_TEXT[c.status] || c.status || "";
    var who = $("view-assignee");
    who.hidden = !known;
    who.setAttribute("data-assignee", c.assignee ? c.assignee.id : "");
    who.textContent = c.assignee ? "Assigned to " + (isMine(c.assignee) ? "you" : c.assignee.name) : "Unassigned";
    document.querySelector(".actions").hidden = !known;
    $("claim").hidden = isMine(c.assignee);
    $("unassign").hidden = !c.assignee;
    $("close").hidden = c.status === "closed";
    $("reopen").hidden = c.status !== "closed";
    if (before && before.hidden && NEXT_FOCUS[before.id]) $(NEXT_FOCUS[before.id]).focus();
  }
  function renderAgents() {
    var select = $("transfer-to");
    var chosen = select.value;
    select.length = 1; /* keeps the prompt */
    agents.forEach(function (a) {
      select.appendChild(el("option", { value: a.id }, a.name + (a.id === conn.me ? " (you)" : "") + " · " + a.availability));
    });
    select.value = chosen;
    if (select.selectedIndex < 0) select.selectedIndex = 0;
  }
  function loadAgents() {
    return api("/api/v1/agents")
      .then(function (body) {
        agents = body.agents || [];
        var me = agents.filter(function (a) {
          return a.id === conn.me;
        })[0];
        if (me && !availability) showAvailability(me.availability);
        renderAgents();
      })
      .catch(function (e) {
        $("action-error").textContent = "Agents not loaded: " + e.message;
      });
  }
  /* The open conversation as stored, for its status and assignee. */
  function refreshShown() {
    var id = current;
    return api("/api/v1/conversations/" + encodeURIComponent(id))
      .then(function (c) {
        if (id === current && supersedes(c, shown, true)) {
          shown = c;
          renderHead();
        }
      })
      .catch(function (e) {
        if (id === current) $("action-error").textContent = "Could not load this conversation: " + e.message;
      });
  }
  function refusal(err) {
    if (err.code === "conflict") return "Another agent is already handling this conversation. Ask them to transfer it to you.";
    return "Could not do that: " + (err.message || err.code);
  }
  /* An inbox operation on the open conversation; its answer is the conversation
     as it now is. Resolves with whether it was done. */
  function act(type, payload) {
    var id = current;
    var data = { conversation_id: id };
    for (var k in payload) data[k] = payload[k];
    $("action-error").textContent = "";
    return conn.call(type, data).then(
      function (ack) {
        apply(ack.conversation, false);
        return true;
      },
      function (err) {
        if (id !== current) return false;
        $("action-error").textContent = refusal(err);
        /* What this page knew was out of date. */
        if (err.code === "conflict") refreshShown();
        return false;
      },
    );
  }
  function claim() {
    return act("assign_conversation", {});
  }
  function row(m) {
    var li = el("li", { class: m.private ? "note" : staff(m) ? "staff" : "customer", "data-id": m.id, "data-offset": String(m.offset) });
    var who = el("span", { class: "who" });
    if (m.private) who.appendChild(el("span", { class: "note-label" }, "Note"));
    who.appendChild(document.createTextNode(m.sender ? m.sender.name : ""));
    li.append(who, el("span", { class: "text" }, m.text));
    var meta = el("span", { class: "meta" }, SB.clock(m.created_at));
    if (staff(m) && !m.private) {
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
  /* Reading up to the newest message from anyone else is what clears the
     conversation's unread count, notes and colleagues' replies included. */
  function markRead() {
    if (!joined || !timeline || document.visibilityState === "hidden") return;
    for (var i = timeline.list.length - 1; i >= 0; i--) {
      var m = timeline.list[i];
      if (!mine(m)) {
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
  function leave(id) {
    if (joined) conn.tell("leave_conversation", { conversation_id: id });
    /* Counting resumes after what was on screen, however late the list's own update. */
    countedTo[id] = Math.max(countedTo[id] || 0, timeline.last);
  }
  function open(id) {
    if (current && current !== id) leave(current);
    if (current !== id) {
      current = id;
      shown = convs[id] || null;
      timeline = new SB.Timeline();
      rows = {};
      readUpTo = 0;
      markedUpTo = 0;
      typers = {};
      joined = false;
      log.textContent = "";
      $("action-error").textContent = "";
      renderTyping();
      join();
      refreshShown();
      loadAgents();
    }
    counts[id] = 0;
    renderHead();
    renderList();
    $("placeholder").hidden = true;
    $("view-head").hidden = false;
    log.hidden = false;
    $("composer").hidden = false;
    document.body.classList.add("viewing");
    rememberLocation();
    input.focus();
  }

  /* ---- availability ------------------------------------------------------ */

  function showAvailability(status) {
    var away = status === "away";
    availableSwitch.checked = !away;
    availableSwitch.setAttribute("data-availability", away ? "away" : "online");
  }
  function sendAvailability() {
    var wanted = availability;
    conn.call("set_availability", { status: wanted }).then(
      function (ack) {
        showAvailability(ack.agent.availability);
      },
      function (err) {
        /* Sent again on reconnect; a refusal undoes the switch. */
        if (err.code === "disconnected" || err.code === "timeout") return;
        availability = wanted === "away" ? "online" : "away";
        showAvailability(availability);
        setState("offline", "availability: " + (err.message || err.code));
      },
    );
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
      showView();
      join();
      loadAgents();
      /* Whether away outlives a connection is the server's affair; the choice made here stands. */
      if (availability) sendAvailability();
    },
    onEvent: function (type, d) {
      if (type === "conversation:new") apply(d.conversation, true);
      else if (type === "conversation:updated") apply(d.conversation, false);
      else if (type === "message:new") {
        if (show(d) && !mine(d)) markRead();
      } else if (type === "user_typing" && d.conversation_id === current && d.user_id !== conn.me) {
        if (d.typing) typers[d.user_id] = nameOf(d.user_id);
        else delete typers[d.user_id];
        renderTyping();
      } else if (type === "message:status" && d.conversation_id === current && d.status === "read") {
        var m = timeline && timeline.byId[d.message_id];
        /* Only the customer reads a public reply; any other read is staff catching up. */
        if (m && (m.private || !staff(m))) return;
        readUpTo = Math.max(readUpTo, m ? m.offset : timeline ? timeline.last : 0);
        renderReceipts();
      }
    },
  });

  /* ---- controls ------------------------------------------------------------ */

  tabs.forEach(function (t, i) {
    t.addEventListener("click", function () {
      choose(t.getAttribute("data-view"));
    });
    /* Arrow keys move between tabs, as in any tab list. */
    t.addEventListener("keydown", function (e) {
      var to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      var next = tabs[(to + tabs.length) % tabs.length];
      next.focus();
      choose(next.getAttribute("data-view"));
    });
  });
  $("claim").addEventListener("click", claim);
  $("unassign").addEventListener("click", function () {
    act("assign_conversation", { assignee: null });
  });
  $("close").addEventListener("click", function () {
    act("close_conversation", {});
  });
  $("reopen").addEventListener("click", function () {
    act("reopen_conversation", {});
  });
  $("transfer").addEventListener("submit", function (e) {
    e.preventDefault();
    var to = agents.filter(function (a) {
      return a.id === $("transfer-to").value;
    })[0];
    if (!to) return;
    act("assign_conversation", { assignee: { id: to.id, name: to.name } }).then(function (done) {
      if (done) $("transfer-to").selectedIndex = 0;
    });
  });
  availableSwitch.addEventListener("change", function () {
    availability = availableSwitch.checked ? "online" : "away";
    sendAvailability();
  });
  noteToggle.addEventListener("change", function () {
    var note = noteToggle.checked;
    $("composer").classList.toggle("note", note);
    input.placeholder = note ? "Write a note only your team sees…" : "Type a reply…";
    $("send").textContent = note ? "Add note" : "Send";
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
    if (noteToggle.checked) attempt.private = true;
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

  renderTabs();
  var wanted = params.get("conversation");
  if (wanted) open(wanted);
  conn.start();
})();
