/* Switchboard chat widget. Embed it with one tag, in either of two modes:
 *
 *   <script src="https://chat.example.com/widget.js" data-token="JWT" data-conversation="ID"></script>
 *     A site with a backend mints the customer token itself (data-conversation
 *     defaults to the token's first conversation).
 *
 *   <script src="https://chat.example.com/widget.js" data-site-key="KEY" data-prechat="name,email"></script>
 *     A site with no backend: the widget opens a visitor session itself
 *     (POST /api/v1/widget/sessions) after a short pre-chat form (the fields
 *     of data-prechat, default "name,email"; "none" for no form). The visitor
 *     id is kept in localStorage ("switchboard.visitor.KEY"), so a returning
 *     visitor skips the form and gets the same conversation; nothing is asked
 *     of the server before the visitor opens the chat or is known. A signed-in
 *     user adds data-user-id and data-user-hash (HMAC of the id, made by the
 *     site's backend), and may add data-user-name / data-user-email. The token
 *     is renewed before it expires, without dropping the socket.
 *
 * Optional in both modes: data-title (the header), data-open (open at load).
 * It speaks the native WebSocket protocol (JSON frames) to the origin it was
 * loaded from, reconnects by itself with back-off and recovers what it missed
 * by offset (join_conversation with since_offset). Its header says who is
 * handling the conversation and whether it is waiting or closed
 * (conversation:updated), and "Talk to a human" hands it to a person
 * (request_human). No dependencies.
 * `window.Switchboard.Connection` is the protocol client, reused by /demo/agent. */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(script && script.src ? script.src : location.href);
  var WS_BASE = (base.protocol === "https:" ? "wss://" : "ws://") + base.host;

  /* ---- the protocol client -------------------------------------------- */

  function Connection(opts) {
    this.token = opts.token;
    this.onEvent = opts.onEvent || function () {};
    this.onState = opts.onState || function () {};
    this.onReady = opts.onReady || function () {};
    this.state = "connecting";
    this.me = null;
    this.ws = null;
    this.next = 0;
    this.pending = {};
    this.attempt = 0;
    this.timer = null;
    var self = this;
    window.addEventListener("online", function () {
      if (self.state === "offline") self.reconnectNow();
    });
  }
  Connection.prototype.setState = function (s, why) {
    if (this.state === s && !why) return;
    this.state = s;
    this.onState(s, why);
  };
  Connection.prototype.start = function () {
    var self = this;
    clearTimeout(this.timer);
    this.setState("connecting");
    var ws;
    try {
      ws = new WebSocket(WS_BASE + "/ws?token=" + encodeURIComponent(this.token));
    } catch (e) {
      return this.retry();
    }
    this.ws = ws;
    ws.onmessage = function (e) {
      var f;
      try {
        f = JSON.parse(e.data);
      } catch (err) {
        return;
      }
      if (f.type === "ack") {
        var p = self.pending[f.ref];
        if (p) {
          delete self.pending[f.ref];
          clearTimeout(p.timer);
          if (f.ok) p.resolve(f);
          else p.reject(f.error || { code: "error", message: "refused" });
        }
      } else if (f.type === "connected") {
        self.me = f.data && f.data.user_id;
        self.attempt = 0;
        self.setState("online");
        self.onReady();
      } else {
        self.onEvent(f.type, f.data || {});
      }
    };
    ws.onclose = function () {
      if (self.ws !== ws) return;
      self.ws = null;
      self.failPending();
      self.retry();
    };
  };
  Connection.prototype.failPending = function () {
    for (var ref in this.pending) {
      clearTimeout(this.pending[ref].timer);
      this.pending[ref].reject({ code: "disconnected", message: "connection lost" });
    }
    this.pending = {};
  };
  /* Drops the socket and connects again at once, with `this.token` as it now is. */
  Connection.prototype.restart = function () {
    var ws = this.ws;
    this.ws = null;
    this.failPending();
    if (ws) ws.close();
    this.reconnectNow();
  };
  /* Exponential back-off with jitter: 0.5 s, 1 s, 2 s, 4 s, then 5 s. */
  Connection.prototype.retry = function () {
    var self = this;
    var delay = Math.min(5000, 500 * Math.pow(2, this.attempt++));
    delay = delay / 2 + Math.random() * (delay / 2);
    this.setState("offline");
    clearTimeout(this.timer);
    this.timer = setTimeout(function () {
      self.start();
    }, delay);
  };
  Connection.prototype.reconnectNow = function () {
    this.attempt = 0;
    this.start();
  };
  /* An operation; resolves with its ack, rejects on refusal or disconnect. */
  Connection.prototype.call = function (type, payload) {
    var self = this;
    return new Promise(function (resolve, reject) {
      if (!self.ws || self.ws.readyState !== 1 || self.state !== "online") {
        return reject({ code: "disconnected", message: "not connected" });
      }
      var ref = "r" + ++self.next;
      var frame = { type: type, ref: ref };
      for (var k in payload) frame[k] = payload[k];
      var timer = setTimeout(function () {
        delete self.pending[ref];
        reject({ code: "timeout", message: type + " unanswered" });
      }, 15000);
      self.pending[ref] = { resolve: resolve, reject: reject, timer: timer };
      self.ws.send(JSON.stringify(frame));
    });
  };
  /* Fire and forget (typing, receipts): nothing is lost if it fails. */
  Connection.prototype.tell = function (type, payload) {
    this.call(type, payload).catch(function () {});
  };

  /* Messages of one conversation, ordered by offset, each once. */
  function Timeline() {
    this.byId = {};
    this.list = [];
    this.last = 0;
  }
  /* Answers true when the message is new. */
  Timeline.prototype.add = function (m) {
    if (!m || !m.id || this.byId[m.id]) return false;
    this.byId[m.id] = m;
    var i = this.list.length;
    while (i > 0 && this.list[i - 1].offset > m.offset) i--;
    this.list.splice(i, 0, m);
    if (m.offset > this.last) this.last = m.offset;
    return true;
  };
  Timeline.prototype.before = function (m) {
    var i = this.list.indexOf(m);
    return i >= 0 && i + 1 < this.list.length ? this.list[i + 1] : null;
  };

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "class") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    if (text != null) e.textContent = text;
    return e;
  }
  function clock(iso) {
    var d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  function uid() {
    return (crypto.randomUUID ? crypto.randomUUID() : Date.now().toString(36) + Math.random().toString(36).slice(2));
  }
  /* A conversation state's age: its last change or its last message, whichever is later. */
  function conversationAge(c) {
    var changed = Date.parse(c.updated_at) || 0;
    var said = c.last_message ? Date.parse(c.last_message.created_at) || 0 : 0;
    return Math.max(changed, said);
  }
  /* Whether state `c` of a conversation replaces `known`. Events arrive in
     order, so one as new as what is known wins; a fetched snapshot may trail
     the events already applied and wins only when newer. */
  function supersedes(c, known, snapshot) {
    if (!known) return true;
    return snapshot ? conversationAge(c) > conversationAge(known) : conversationAge(c) >= conversationAge(known);
  }
  var STATE_TEXT = { connecting: "Connecting…", online: "Online", offline: "Offline, reconnecting…" };

  /* Reports typing in `input` on `conn`: a start at most every 3 s while the
     user types, a stop after 2 s idle or when the box empties. `target()`
     answers the conversation to tell, or null while not joined. Returns the
     stop, for the page to call on send. */
  function reportTyping(conn, input, target) {
    var timer = null;
    var sent = 0;
    function stop() {
      if (!timer) return;
      clearTimeout(timer);
      timer = null;
      sent = 0;
      var id = target();
      if (id) conn.tell("typing_stop", { conversation_id: id });
    }
    input.addEventListener("input", function () {
      var id = target();
      if (!id || !input.value.trim()) return stop();
      if (Date.now() - sent > 3000) {
        sent = Date.now();
        conn.tell("typing_start", { conversation_id: id });
      }
      clearTimeout(timer);
      timer = setTimeout(stop, 2000);
    });
    return stop;
  }

  window.Switchboard = {
    Connection: Connection,
    Timeline: Timeline,
    reportTyping: reportTyping,
    el: el,
    clock: clock,
    uid: uid,
    conversationAge: conversationAge,
    supersedes: supersedes,
    STATE_TEXT: STATE_TEXT,
  };

  var token = script && script.getAttribute("data-token");
  /* Site-key mode: the widget opens its own visitor session (contract §12). */
  var siteKey = !token && script && script.getAttribute("data-site-key");
  if (!token && !siteKey) return; /* loaded as a library (the agent inbox) */

  /* ---- the widget ----------------------------------------------------- */

  var conversation = token ? script.getAttribute("data-conversation") : null;
  if (token && !conversation) {
    try {
      var claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
      conversation = (claims.conversations || [])[0];
    } catch (e) {
      conversation = null;
    }
  }
  var title = script.getAttribute("data-title") || "Support";

  var CSS =
    ":host{all:initial}*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}" +
    ".launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;width:60px;height:60px;border-radius:50%;border:0;background:#2f5bea;color:#fff;box-shadow:0 4px 14px rgba(0,0,0,.25);cursor:pointer;display:flex;align-items:center;justify-content:center}" +
    ".launcher svg{width:28px;height:28px}.launcher:focus-visible,button:focus-visible,textarea:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}" +
    ".badge{position:absolute;top:-2px;right:-2px;min-width:22px;height:22px;border-radius:11px;background:#d4351c;color:#fff;font-size:12px;font-weight:700;line-height:22px;padding:0 6px}" +
    ".panel{position:fixed;right:20px;bottom:92px;z-index:2147483000;width:370px;height:min(580px,calc(100vh - 112px));background:#fff;color:#1b1b1f;border-radius:14px;box-shadow:0 8px 30px rgba(0,0,0,.25);display:flex;flex-direction:column;overflow:hidden}" +
    ".panel[hidden]{display:none}" +
    "header{display:flex;align-items:center;gap:10px;padding:12px 14px;background:#2f5bea;color:#fff}" +
    ".titles{flex:1;min-width:0}header h2{margin:0;font-size:16px}.sub{margin:2px 0 0;font-size:12px;opacity:.92}.state{font-size:12px;display:flex;align-items:center;gap:6px}" +
    ".dot{width:9px;height:9px;border-radius:50%;background:#ffbf47}.state[data-state=online] .dot{background:#4cd964}.state[data-state=offline] .dot{background:#ff6b6b}" +
    ".close{background:transparent;border:0;color:#fff;font-size:22px;line-height:1;cursor:pointer;padding:4px 8px;border-radius:6px}" +
    "ol{list-style:none;margin:0;padding:12px;flex:1;overflow-y:auto;background:#f4f5f8;display:flex;flex-direction:column;gap:8px}" +
    "li{max-width:80%;padding:8px 11px;border-radius:12px;background:#fff;box-shadow:0 1px 1px rgba(0,0,0,.08);align-self:flex-start;overflow-wrap:anywhere;white-space:pre-wrap;font-size:14px;line-height:1.35}" +
    "li.mine{align-self:flex-end;background:#2f5bea;color:#fff}li.pending{opacity:.65}" +
    ".who{display:block;font-size:11px;font-weight:600;color:#555;margin-bottom:2px}li.mine .who{display:none}" +
    ".meta{display:block;font-size:11px;margin-top:3px;opacity:.75;text-align:right}" +
    ".empty{align-self:center;background:none;box-shadow:none;color:#666;font-size:13px}" +
    ".notice{align-self:center;max-width:100%;background:none;box-shadow:none;color:#555;font-size:12px;text-align:center;padding:2px 8px}" +
    ".bar{display:flex;justify-content:center;padding:6px 10px;background:#f4f5f8}.bar[hidden]{display:none}" +
    ".human{border:1px solid #2f5bea;background:#fff;color:#2f5bea;border-radius:16px;padding:5px 14px;font-size:13px;font-weight:600;cursor:pointer}" +
    ".typing{min-height:22px;padding:2px 14px;font-size:12px;color:#555;background:#f4f5f8;font-style:italic}" +
    "form{display:flex;gap:8px;padding:10px;border-top:1px solid #e3e4e8;background:#fff}" +
    "textarea{flex:1;resize:none;height:42px;max-height:120px;padding:10px 12px;border:1px solid #b9bcc6;border-radius:10px;font-size:15px;color:#1b1b1f}" +
    ".send{border:0;border-radius:10px;background:#2f5bea;color:#fff;font-weight:600;padding:0 16px;cursor:pointer;font-size:14px}" +
    ".prechat{flex:1;flex-direction:column;gap:14px;padding:18px 16px;border-top:0;background:#f4f5f8;overflow-y:auto}.prechat[hidden]{display:none}" +
    ".intro{margin:0;font-size:14px;line-height:1.4;color:#1b1b1f}.field{display:flex;flex-direction:column;gap:4px}" +
    ".field label{font-size:14px;font-weight:600;color:#1b1b1f}" +
    ".field input{height:42px;padding:8px 12px;border:1px solid #b9bcc6;border-radius:10px;font-size:15px;color:#1b1b1f;background:#fff}" +
    ".field input[aria-invalid=true]{border:2px solid #b3261e}input:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}" +
    ".error{margin:0;font-size:13px;color:#b3261e;font-weight:600}.error[hidden]{display:none}" +
    ".start{align-self:stretch;height:44px;border:0;border-radius:10px;background:#2f5bea;color:#fff;font-weight:600;font-size:15px;cursor:pointer}.start[aria-disabled=true]{opacity:.65;cursor:progress}" +
    ".live{margin:0;padding:8px 14px;font-size:13px;background:#fff4e5;color:#5c3200;border-bottom:1px solid #f0b66b}.live:empty{padding:0;border:0}" +
    ".messages[hidden],.typing[hidden],.composer[hidden],.state[hidden]{display:none}" +
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}" +
    "@media (max-width:480px){.panel{right:0;bottom:0;width:100vw;height:100%;border-radius:0}.launcher[aria-expanded=true]{display:none}}";

  /* The pre-chat form's fields: data-prechat="name,email" (the default), a
     subset of those, or "none". */
  function prechatFields(attr) {
    var v = (attr == null ? "" : attr).trim().toLowerCase();
    if (!v) return ["name", "email"];
    if (v === "none") return [];
    return ["name", "email"].filter(function (f) {
      return v.split(",").map(function (x) {
        return x.trim();
      }).indexOf(f) >= 0;
    });
  }
  var FIELD = {
    name: { label: "Name", type: "text", autocomplete: "name", maxlength: "100", missing: "Please enter your name." },
    email: { label: "Email", type: "email", autocomplete: "email", maxlength: "254", missing: "Please enter your email address." },
  };
  /* A labelled input per field, each with its own error text; the form checks them itself (novalidate). */
  function buildPrechat(fields) {
    if (!fields.length) return null;
    var f = el("form", { class: "prechat", "aria-labelledby": "sb-prechat-intro", novalidate: "" });
    f.appendChild(el("p", { class: "intro", id: "sb-prechat-intro" }, "Before we start, tell us who you are so we can get back to you."));
    var inputs = {};
    fields.forEach(function (name) {
      var d = FIELD[name];
      var wrap = el("div", { class: "field" });
      var input = el("input", {
        id: "sb-" + name,
        name: name,
        type: d.type,
        autocomplete: d.autocomplete,
        maxlength: d.maxlength,
        required: "",
        "aria-required": "true",
      });
      if (name === "email") input.setAttribute("inputmode", "email");
      var error = el("p", { class: "error", id: "sb-" + name + "-error" });
      error.hidden = true;
      wrap.append(el("label", { for: "sb-" + name }, d.label), input, error);
      f.appendChild(wrap);
      inputs[name] = { input: input, error: error };
    });
    var start = el("button", { class: "start", type: "submit" }, "Start chat");
    f.appendChild(start);
    return { form: f, inputs: inputs, start: start, first: inputs[fields[0]].input };
  }
  /* What is wrong with a field's value, or "". */
  function fieldProblem(name, value) {
    if (!value) return FIELD[name].missing;
    if (name === "email" && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(value)) return "Please enter a valid email address, like name@example.com.";
    return "";
  }

  var host = el("div", { id: "switchboard-widget" });
  var root = host.attachShadow({ mode: "open" });
  var style = el("style");
  style.textContent = CSS;
  var launcher = el("button", {
    class: "launcher",
    type: "button",
    "aria-expanded": "false",
    "aria-controls": "sb-panel",
    "aria-label": "Open chat",
  });
  launcher.innerHTML =
    '<svg viewBox="0 0 24 24" aria-hidden="true" fill="currentColor"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';
  var badge = el("span", { class: "badge", "aria-hidden": "true" });
  badge.hidden = true;
  launcher.appendChild(badge);

  var panel = el("section", { class: "panel", id: "sb-panel", role: "dialog", "aria-labelledby": "sb-title" });
  panel.hidden = true;
  var header = el("header");
  var titles = el("div", { class: "titles" });
  var h2 = el("h2", { id: "sb-title" }, title);
  var statusLine = el("p", { class: "sub", "aria-live": "polite" });
  statusLine.hidden = true;
  titles.append(h2, statusLine);
  var stateEl = el("span", { class: "state", role: "status", "data-state": "connecting" });
  var dot = el("span", { class: "dot", "aria-hidden": "true" });
  var stateText = el("span", null, STATE_TEXT.connecting);
  stateEl.append(dot, stateText);
  var close = el("button", { class: "close", type: "button", "aria-label": "Close chat" }, "×");
  header.append(titles, stateEl, close);
  var log = el("ol", { class: "messages", role: "log", "aria-live": "polite", "aria-label": "Messages", tabindex: "0" });
  var typingEl = el("div", { class: "typing", "aria-live": "polite" });
  var bar = el("div", { class: "bar" });
  var human = el("button", { class: "human", type: "button" }, "Talk to a human");
  bar.appendChild(human);
  bar.hidden = true;
  var form = el("form", { class: "composer", "aria-label": "Send a message" });
  var label = el("label", { for: "sb-input", class: "sr" }, "Message");
  var input = el("textarea", {
    id: "sb-input",
    rows: "1",
    placeholder: "Type a message…",
    autocomplete: "off",
    maxlength: "4096",
    "aria-describedby": "sb-hint",
  });
  var hint = el("span", { id: "sb-hint", class: "sr" }, "Enter sends, Shift+Enter adds a line");
  var send = el("button", { class: "send", type: "submit" }, "Send");
  form.append(label, input, hint, send);
  /* Errors that concern the whole chat (a refused session), read out as they come. */
  var live = el("p", { class: "live", id: "sb-live", role: "alert", "aria-live": "assertive" });
  panel.append(header, live, log, typingEl, bar, form);
  var prechat = siteKey ? buildPrechat(prechatFields(script.getAttribute("data-prechat"))) : null;
  if (prechat) panel.insertBefore(prechat.form, log);
  root.append(style, launcher, panel);
  (document.body || document.documentElement).appendChild(host);

  var timeline = new Timeline();
  var rows = {}; /* message id or client_msg_id -> li */
  var outbox = []; /* {client_msg_id, text} not yet acknowledged */
  var unread = 0;
  var readUpTo = 0; /* highest offset of my messages the other side has read */
  var markedUpTo = 0; /* highest offset I reported read */
  var typers = {};
  var joined = false;
  var handling = null; /* the conversation's status and assignee, as last heard */
  /* Whether the conversation is stored: a visitor's starts with its first message,
     and reading one that is not would be a 404. */
  var exists = !siteKey;
  var emptyRow = el("li", { class: "empty" }, "Ask us anything, we usually answer in a few minutes.");
  log.appendChild(emptyRow);

  function isOpen() {
    return !panel.hidden;
  }
  function mine(m) {
    return conn.me ? m.sender && m.sender.id === conn.me : m.sender && m.sender.role === "customer";
  }
  function setOpen(open) {
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", String(open));
    launcher.setAttribute("aria-label", open ? "Close chat" : "Open chat");
    try {
      sessionStorage.setItem("switchboard-open", open ? "1" : "");
    } catch (e) {
      /* storage may be disabled */
    }
    if (open) {
      unread = 0;
      renderBadge();
      log.scrollTop = log.scrollHeight;
      if (prechat && !prechat.form.hidden) prechat.first.focus();
      else input.focus();
      markRead();
      /* With no form to fill (data-prechat="none"), opening the chat is what starts the session. */
      if (siteKey && !conversation && !prechatShown()) begin();
    } else launcher.focus();
  }
  function renderBadge() {
    badge.hidden = unread === 0;
    badge.textContent = unread > 9 ? "9+" : String(unread);
    launcher.setAttribute("aria-label", (isOpen() ? "Close chat" : "Open chat") + (unread ? ", " + unread + " unread" : ""));
  }
  function receipt(m) {
    return m.offset <= readUpTo ? "Read" : "Sent";
  }
  function row(m) {
    var li = el("li", { class: mine(m) ? "mine" : "theirs", "data-id": m.id, "data-offset": String(m.offset) });
    li.appendChild(el("span", { class: "who" }, m.sender ? m.sender.name : ""));
    li.appendChild(el("span", { class: "text" }, m.text));
    var meta = el("span", { class: "meta" }, clock(m.created_at));
    if (mine(m)) {
      var st = el("span", { class: "receipt", "data-status": receipt(m).toLowerCase() }, " · " + receipt(m));
      meta.appendChild(st);
    }
    li.appendChild(meta);
    return li;
  }
  function show(m) {
    /* Notes are for staff: the server keeps them from customers, and one that came anyway stays unseen. */
    if (m.private || (m.conversation_id && m.conversation_id !== conversation) || !timeline.add(m)) return false;
    if (!exists) {
      exists = true;
      if (joined) loadHandling();
    }
    if (emptyRow.parentNode) emptyRow.remove();
    var pending = m.client_msg_id && rows[m.client_msg_id];
    if (pending) {
      pending.remove();
      delete rows[m.client_msg_id];
    }
    var li = row(m);
    rows[m.id] = li;
    var next = timeline.before(m);
    var stick = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
    var anchor = next && rows[next.id];
    if (anchor) log.insertBefore(li, anchor);
    else {
      var firstPending = log.querySelector("li.pending");
      log.insertBefore(li, firstPending);
    }
    if (stick || mine(m)) log.scrollTop = log.scrollHeight;
    if (!mine(m)) {
      delete typers[m.sender.id];
      renderTyping();
    }
    return true;
  }
  function showPending(p) {
    if (emptyRow.parentNode) emptyRow.remove();
    var li = el("li", { class: "mine pending", "data-client-id": p.client_msg_id });
    li.appendChild(el("span", { class: "text" }, p.text));
    li.appendChild(el("span", { class: "meta" }, "Sending…"));
    rows[p.client_msg_id] = li;
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
  }
  function renderReceipts() {
    var spans = log.querySelectorAll("li.mine[data-offset] .receipt");
    for (var i = 0; i < spans.length; i++) {
      var off = Number(spans[i].parentNode.parentNode.getAttribute("data-offset"));
      var s = off <= readUpTo ? "read" : "sent";
      if (spans[i].getAttribute("data-status") !== s) {
        spans[i].setAttribute("data-status", s);
        spans[i].textContent = " · " + (s === "read" ? "Read" : "Sent");
      }
    }
  }
  function renderTyping() {
    var names = Object.keys(typers).map(function (k) {
      return typers[k].name;
    });
    typingEl.textContent = names.length ? names.join(", ") + (names.length > 1 ? " are" : " is") + " typing…" : "";
  }
  /* Receipts for what the customer can see: the newest message from the other side. */
  function markRead() {
    if (!joined || !isOpen() || document.visibilityState === "hidden") return;
    for (var i = timeline.list.length - 1; i >= 0; i--) {
      var m = timeline.list[i];
      if (!mine(m)) {
        if (m.offset > markedUpTo) {
          markedUpTo = m.offset;
          conn.tell("mark_read", { conversation_id: conversation, message_id: m.id });
        }
        return;
      }
    }
  }
  function applyConversation(c, snapshot) {
    if (!c || c.id !== conversation || !supersedes(c, handling, snapshot)) return;
    var before = handling;
    handling = c;
    if (before) announce(before, c);
    renderHandling();
  }
  function announce(before, after) {
    var a = after.assignee;
    if (a && (!before.assignee || before.assignee.id !== a.id)) notice(a.name + " joined");
    if (after.status === before.status) return;
    if (after.status === "closed") notice("Conversation closed");
    else if (before.status === "closed") notice("Conversation reopened");
  }
  function notice(text) {
    if (emptyRow.parentNode) emptyRow.remove();
    log.insertBefore(el("li", { class: "notice" }, text), log.querySelector("li.pending"));
    log.scrollTop = log.scrollHeight;
  }
  function renderHandling() {
    var c = handling;
    var text = "";
    if (c.status === "pending") text = "Waiting for an agent…";
    else if (c.status === "closed") text = "Conversation closed";
    else if (c.assignee) text = "Chatting with " + c.assignee.name;
    statusLine.textContent = text;
    statusLine.hidden = !text;
    statusLine.setAttribute("data-status", c.status);
    bar.hidden = !!c.assignee || c.status === "pending";
    if (bar.hidden && root.activeElement === human) input.focus();
  }
  /* Read again at every join: what changed while the socket was away came as
     no event. A page on another origin needs this one to allow it
     (SWITCHBOARD_CORS_ORIGINS); without that, the state shows from its next change. */
  function loadHandling() {
    fetch(base.origin + "/api/v1/conversations/" + encodeURIComponent(conversation), {
      headers: { authorization: "Bearer " + token },
    })
      .then(function (r) {
        return r.ok ? r.json() : null;
      })
      .then(function (c) {
        if (c) applyConversation(c, true);
      })
      .catch(function () {});
  }
  function requestHuman() {
    human.disabled = true;
    conn
      .call("request_human", { conversation_id: conversation })
      .then(
        function (ack) {
          applyConversation(ack.conversation, false);
        },
        function (err) {
          notice("Could not reach an agent: " + (err.message || err.code));
        },
      )
      .then(function () {
        human.disabled = false;
      });
  }
  function flush() {
    outbox.slice().forEach(function (p) {
      if (p.inFlight) return;
      p.inFlight = true;
      conn
        .call("send_message", { conversation_id: conversation, text: p.text, client_msg_id: p.client_msg_id })
        .then(function (ack) {
          outbox.splice(outbox.indexOf(p), 1);
          show(ack.message);
        })
        .catch(function (err) {
          p.inFlight = false;
          if (err.code !== "disconnected" && err.code !== "timeout") {
            outbox.splice(outbox.indexOf(p), 1);
            var li = rows[p.client_msg_id];
            if (li) li.querySelector(".meta").textContent = "Not sent: " + (err.message || err.code);
          }
        });
    });
  }
  function join() {
    var id = conversation;
    var payload = { conversation_id: id };
    if (timeline.last > 0) payload.since_offset = timeline.last;
    conn
      .call("join_conversation", payload)
      .then(function (ack) {
        if (id !== conversation) return;
        joined = true;
        /* A visitor's conversation not started yet answers offset 0 and no messages. */
        if (ack.offset > 0 || (ack.messages || []).length) exists = true;
        (ack.messages || []).forEach(show);
        setStateText("online");
        if (exists) loadHandling();
        markRead();
        flush();
      })
      .catch(function (err) {
        if (err.code !== "disconnected") setStateText("offline", err.message || "cannot join");
      });
  }
  function setStateText(s, why) {
    stateEl.setAttribute("data-state", s);
    stateText.textContent = why ? "Offline: " + why : STATE_TEXT[s];
    host.setAttribute("data-state", s);
  }

  var conn = new Connection({
    token: token,
    onState: function (s) {
      if (s !== "online") {
        joined = false;
        typers = {};
        renderTyping();
        setStateText(s);
        if (siteKey && s === "offline") recoverSession();
      }
    },
    onReady: function () {
      if (conversation) join();
      else setStateText("offline", "no conversation in this token");
    },
    onEvent: function (type, d) {
      if (d.conversation_id && d.conversation_id !== conversation) return;
      if (type === "message:new") {
        if (show(d) && !mine(d)) {
          if (isOpen()) markRead();
          else {
            unread++;
            renderBadge();
          }
        }
      } else if (type === "conversation:updated") {
        applyConversation(d.conversation, false);
      } else if (type === "user_typing") {
        if (d.user_id === conn.me) return;
        if (d.typing) {
          var last = timeline.list.filter(function (m) {
            return m.sender && m.sender.id === d.user_id;
          }).pop();
          typers[d.user_id] = { name: last ? last.sender.name : "Support" };
        } else delete typers[d.user_id];
        renderTyping();
      } else if (type === "message:status" && d.status === "read") {
        var m = timeline.byId[d.message_id];
        if (m && m.offset > readUpTo) {
          readUpTo = m.offset;
          renderReceipts();
        } else if (!m) {
          /* A receipt for a message of mine that is still arriving: read means everything up to now. */
          readUpTo = Math.max(readUpTo, timeline.last);
          renderReceipts();
        }
      }
    },
  });

  /* Typing: a start when the customer types, a stop after 2 s idle or on send. */
  var stopTyping = reportTyping(conn, input, function () {
    return joined ? conversation : null;
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit"));
    } else if (e.key === "Escape") setOpen(false);
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    /* A visitor may write while its session is being opened: sent once joined. */
    if (!text || (!conversation && !siteKey)) return;
    input.value = "";
    stopTyping();
    var p = { client_msg_id: uid(), text: text };
    outbox.push(p);
    showPending(p);
    if (joined) flush();
  });
  launcher.addEventListener("click", function () {
    setOpen(!isOpen());
  });
  human.addEventListener("click", requestHuman);
  close.addEventListener("click", function () {
    setOpen(false);
  });
  panel.addEventListener("keydown", function (e) {
    if (e.key === "Escape") setOpen(false);
  });
  document.addEventListener("visibilitychange", markRead);

  /* ---- site-key mode: the visitor's session (contract §12) --------------- */

  var VISITOR_KEY = "switchboard.visitor." + siteKey;
  var SESSION_KEY = "switchboard.session." + siteKey;
  var user = null; /* {id, hash, name, email}: a signed-in user of the site */
  var visitor = {}; /* {visitor_id, name, email}, as kept in localStorage */
  var expiresAt = 0; /* when the current token expires (ms) */
  var requesting = false;
  var renewing = false;
  var lastRenewal = 0;
  var mismatches = 0;
  var unreachable = 0; /* session requests in a row that found no server */
  var startTimer = null;
  var renewTimer = null;
  var nextSession = null; /* a renewal's session for another conversation, while this one goes on */
  var REFUSALS = {
    origin_not_allowed: "This site is not allowed to use the chat.",
    invalid_site_key: "This chat is not set up correctly: its site key is unknown.",
    invalid_user_hash: "We could not confirm who you are signed in as, so the chat cannot start.",
  };

  function storage(kind) {
    try {
      return window[kind];
    } catch (e) {
      return null; /* storage disabled */
    }
  }
  function readStored(kind, key) {
    try {
      var v = JSON.parse(storage(kind).getItem(key) || "null");
      return v && typeof v === "object" ? v : null;
    } catch (e) {
      return null;
    }
  }
  function writeStored(kind, key, value) {
    try {
      if (value) storage(kind).setItem(key, JSON.stringify(value));
      else storage(kind).removeItem(key);
    } catch (e) {
      /* storage may be disabled or full: the visitor is new at every visit */
    }
  }
  function nonEmpty(v) {
    return typeof v === "string" && v ? v : undefined;
  }
  /* What the live region says; `code` names the refusal for scripts and tests. */
  function say(message, code) {
    live.textContent = message || "";
    if (code) live.setAttribute("data-code", code);
    else live.removeAttribute("data-code");
  }
  function prechatShown() {
    return !!prechat && !prechat.form.hidden;
  }
  function showForm(on) {
    if (prechat) prechat.form.hidden = !on;
    log.hidden = on;
    typingEl.hidden = on;
    form.hidden = on;
    stateEl.hidden = on;
    if (isOpen()) (on ? prechat.first : input).focus();
  }
  function sessionBody() {
    var body = { site_key: siteKey };
    var name = (user && user.name) || visitor.name;
    var email = (user && user.email) || visitor.email;
    if (name) body.name = name;
    if (email) body.email = email;
    if (visitor.visitor_id) body.visitor_id = visitor.visitor_id;
    if (user) {
      body.user_id = user.id;
      if (user.hash) body.user_hash = user.hash;
    }
    return body;
  }
  /* POST /api/v1/widget/sessions; resolves with {token, conversation_id,
     visitor_id, expires_at}, rejects with {status, code, message, retryAfter}. */
  function requestSession() {
    return fetch(base.origin + "/api/v1/widget/sessions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(sessionBody()),
      credentials: "omit",
    }).then(
      function (r) {
        return r
          .json()
          .catch(function () {
            return null;
          })
          .then(function (b) {
            if (r.ok && b && b.token && b.conversation_id) return b;
            var e = (b && b.error) || {};
            return Promise.reject({
              status: r.status,
              code: e.code || "http_" + r.status,
              message: e.message || "HTTP " + r.status,
              retryAfter: Number(r.headers.get("retry-after")) || 0,
            });
          });
      },
      function () {
        return Promise.reject({ status: 0, code: "network", message: "unreachable" });
      },
    );
  }
  /* Keeps the visitor id for the next visit and the session for this tab's next page. */
  function remember(s, cache) {
    visitor.visitor_id = s.visitor_id;
    var kept = { visitor_id: visitor.visitor_id };
    if (visitor.name) kept.name = visitor.name;
    if (visitor.email) kept.email = visitor.email;
    writeStored("localStorage", VISITOR_KEY, kept);
    writeStored(
      "sessionStorage",
      SESSION_KEY,
      cache && {
        token: s.token,
        conversation_id: s.conversation_id,
        visitor_id: s.visitor_id,
        expires_at: s.expires_at,
        user_id: user ? user.id : null,
      },
    );
  }
  /* Makes `s` the session in use: its token for the next connection and HTTP read. */
  function adopt(s) {
    token = s.token;
    conn.token = s.token;
    conversation = s.conversation_id;
    host.setAttribute("data-conversation", conversation);
    expiresAt = Date.parse(s.expires_at) || 0;
    clearTimeout(renewTimer);
    var life = expiresAt - Date.now();
    /* At 80% of its life; a token that looks expired already is a clock apart from the server's. */
    renewTimer = setTimeout(renew, life > 5000 ? life * 0.8 : 60000);
  }
  function refused(err) {
    if (err.status === 429) {
      var wait = err.retryAfter || 30;
      say("Many chats are starting right now. We will try again in " + wait + " second" + (wait === 1 ? "" : "s") + ", thank you for waiting.", err.code);
    } else if (REFUSALS[err.code]) say(REFUSALS[err.code], err.code);
    else if (err.code === "network") say("We could not reach the chat. Check your connection; we will try again shortly.", err.code);
    else say("The chat could not start: " + err.message, err.code);
  }
  function setBusy(busy) {
    if (!prechat) return;
    prechat.form.setAttribute("aria-busy", String(busy));
    prechat.start.setAttribute("aria-disabled", String(busy));
    prechat.start.textContent = busy ? "Starting…" : "Start chat";
  }
  /* The first session of this page: from the form, when a form-less chat is
     opened, or at load for a visitor the widget knows. */
  function begin() {
    if (requesting || conversation) return;
    clearTimeout(startTimer);
    requesting = true;
    setBusy(true);
    requestSession().then(
      function (s) {
        requesting = false;
        unreachable = 0;
        setBusy(false);
        say("");
        remember(s, true);
        adopt(s);
        showForm(false);
        conn.start();
      },
      function (err) {
        requesting = false;
        setBusy(false);
        refused(err);
        /* Over the rate: again after Retry-After. Unreachable: again with back-off
           (10 s, 20 s, ... 5 min). A refusal stays until the visitor tries again. */
        if (err.status === 429) startTimer = setTimeout(begin, (err.retryAfter || 30) * 1000);
        else if (err.code === "network") startTimer = setTimeout(begin, Math.min(300, 10 * Math.pow(2, unreachable++)) * 1000);
      },
    );
  }
  function said() {
    return timeline.list.length > 0 || outbox.length > 0;
  }
  /* Leaves the current conversation for session `s`'s, which starts empty. */
  function moveTo(s, reconnect) {
    var visible = said();
    nextSession = null;
    mismatches = 0;
    adopt(s);
    remember(s, true);
    timeline = new Timeline();
    rows = {};
    readUpTo = 0;
    markedUpTo = 0;
    typers = {};
    handling = null;
    exists = false;
    joined = false;
    log.textContent = "";
    log.appendChild(emptyRow);
    statusLine.hidden = true;
    bar.hidden = true;
    renderTyping();
    if (visible) notice("Your previous conversation has ended. Write to us to start a new one.");
    if (reconnect) conn.restart();
  }
  /* A new token for the same visitor, before this one expires; the socket stays. */
  function renew() {
    clearTimeout(renewTimer);
    if (renewing) return;
    renewing = true;
    lastRenewal = Date.now();
    requestSession().then(
      function (s) {
        renewing = false;
        if (s.conversation_id === conversation) {
          mismatches = 0;
          nextSession = null;
          remember(s, true);
          return adopt(s);
        }
        /* Not started (a new id every time), or closed. */
        if (!said()) return moveTo(s, conn.state !== "offline");
        /* This one goes on until reload; asked once more soon in case its first
           message was still on its way when the server answered. */
        nextSession = s;
        remember(s, false);
        if (++mismatches === 1) renewTimer = setTimeout(renew, 2000);
      },
      function (err) {
        renewing = false;
        renewTimer = setTimeout(renew, (err.status === 429 && err.retryAfter ? err.retryAfter : 60) * 1000);
      },
    );
  }
  /* Offline: a token that expired meanwhile cannot reconnect, so it is renewed
     now, or the conversation that ended gives way to the next one. */
  function recoverSession() {
    if (!conversation || Date.now() < expiresAt - 10000) return;
    if (nextSession && Date.parse(nextSession.expires_at) > Date.now() + 10000) return moveTo(nextSession, false);
    if (Date.now() - lastRenewal > 30000) renew();
  }
  function startSite() {
    var userId = script.getAttribute("data-user-id");
    if (userId) {
      user = {
        id: userId,
        hash: script.getAttribute("data-user-hash"),
        name: script.getAttribute("data-user-name"),
        email: script.getAttribute("data-user-email"),
      };
    }
    var kept = readStored("localStorage", VISITOR_KEY) || {};
    visitor = { visitor_id: nonEmpty(kept.visitor_id), name: nonEmpty(kept.name), email: nonEmpty(kept.email) };
    /* This tab's session from its previous page, while it has life left. */
    var cached = readStored("sessionStorage", SESSION_KEY);
    if (
      cached &&
      nonEmpty(cached.token) &&
      nonEmpty(cached.conversation_id) &&
      (cached.user_id || null) === (user ? user.id : null) &&
      Date.parse(cached.expires_at) > Date.now() + 10000
    ) {
      if (!visitor.visitor_id) visitor.visitor_id = nonEmpty(cached.visitor_id);
      adopt(cached);
      showForm(false);
      conn.start();
    } else if (visitor.visitor_id || user) {
      /* A returning visitor or a signed-in user: no form, the same conversation. */
      showForm(false);
      begin();
    } else showForm(!!prechat);
    if (!prechat) return;
    prechat.form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (requesting) return;
      var firstBad = null;
      var values = {};
      Object.keys(prechat.inputs).forEach(function (name) {
        var f = prechat.inputs[name];
        var value = f.input.value.trim();
        var problem = fieldProblem(name, value);
        markField(f, problem);
        if (problem && !firstBad) firstBad = f.input;
        values[name] = value;
      });
      if (firstBad) return firstBad.focus();
      visitor.name = values.name || visitor.name;
      visitor.email = values.email || visitor.email;
      begin();
    });
    Object.keys(prechat.inputs).forEach(function (name) {
      var f = prechat.inputs[name];
      f.input.addEventListener("input", function () {
        if (f.input.getAttribute("aria-invalid") === "true" && !fieldProblem(name, f.input.value.trim())) markField(f, "");
      });
    });
  }
  function markField(f, problem) {
    f.error.textContent = problem;
    f.error.hidden = !problem;
    if (problem) {
      f.input.setAttribute("aria-invalid", "true");
      f.input.setAttribute("aria-describedby", f.error.id);
    } else {
      f.input.removeAttribute("aria-invalid");
      f.input.removeAttribute("aria-describedby");
    }
  }

  var wasOpen = false;
  try {
    wasOpen = sessionStorage.getItem("switchboard-open") === "1";
  } catch (e) {
    wasOpen = false;
  }
  if (siteKey) startSite();
  if (wasOpen || script.hasAttribute("data-open")) setOpen(true);
  if (!siteKey) conn.start();
})();
