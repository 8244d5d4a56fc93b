// The widget on a public site with no backend (contract §12): a page of
// another origin embeds /widget.js with data-site-key, the visitor fills the
// pre-chat form by keyboard, writes, an agent answers from /demo/agent, a
// reload keeps the conversation, another browser is another visitor, an
// origin the key does not allow is refused, the token is renewed without a
// reconnect, and a session refused for the rate is retried by itself.
// Debian's Chromium, headless, driven by playwright-core. Everything waits on
// DOM conditions, pages' requests and frames, never on time.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { freePort, startServer } from "../lib/server.mjs";
import { DESKTOP, PHONE, agentMessages, launchBrowser, outputDir, widgetMessages } from "./browser.mjs";

const KEY = "site-a";
const VISITOR_KEY = `switchboard.visitor.${KEY}`;
const VERA = { name: "Vera Visitor", email: "vera@example.com" };
const WALTER = { name: "Walter Second", email: "walter@example.com" };
const FIRST = "Hello, do you ship to Lisbon?";
const REPLY = "Yes, we ship to Lisbon in three days.";
const AFTER_RELOAD = "Great, and is shipping free?";
const WALTER_SAYS = "Hi, this is another visitor";
/** Life of a visitor token here: long enough for a reload within it, short enough to see a renewal. */
const TTL_S = 40;
/** Chromium's own report of a refused request: expected, and only, on the pages that are refused. */
const REFUSED_RESOURCE = /: Failed to load resource: the server responded with a status of (401|403|429) /;

let server, limited, site, sitePort, siteOrigin, agent, agentBrowser, visitor, visitorBrowser, visitorSessions;
let vera; /* {visitor_id, conversation_id, token} of the first visitor */
let walter;
/** Index in the first visitor's sessions of its first renewal. */
let firstRenewal;
/** A visitor who filled the form and wrote nothing: its page, sockets, sessions and first answer. */
const quiet = { page: null, sockets: [], sessions: null, first: null };
const browsers = [];
/** Browsers whose pages are refused a session on purpose: Chromium logs each refused request. */
const refusedBrowsers = new Set();
const agentFrames = [];
const visitorSockets = [];

/** Every POST /api/v1/widget/sessions a page made, with what it sent and what came back, as it happens. */
function recordSessions(page) {
  const seen = [];
  const waiters = [];
  page.on("response", async (res) => {
    const req = res.request();
    if (req.method() !== "POST" || !res.url().endsWith("/api/v1/widget/sessions")) return;
    const entry = {
      sent: req.postDataJSON(),
      status: res.status(),
      headers: res.headers(),
      body: await res.json().catch(() => null),
    };
    seen.push(entry);
    for (const w of [...waiters]) {
      if (seen.length >= w.count) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(seen[w.count - 1]);
      }
    }
  });
  return {
    seen,
    /** Resolves with the `count`th session answer (1-based), once the page has it. */
    nth(count, timeoutMs = 10_000) {
      if (seen.length >= count) return Promise.resolve(seen[count - 1]);
      return new Promise((resolve, reject) => {
        const w = { count, resolve };
        waiters.push(w);
        setTimeout(() => {
          if (waiters.includes(w)) reject(new Error(`session request #${count} not seen in ${timeoutMs} ms (seen ${seen.length})`));
        }, timeoutMs).unref();
      });
    },
  };
}

/** A page of another origin that embeds the widget of `server` with site key `key`. */
function sitePage(widgetOrigin, key) {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Another shop</title>
</head>
<body style="margin:0;font:16px/1.5 system-ui,sans-serif;background:#fafafa">
<header style="background:#3d1f14;color:#fff;padding:18px 24px"><h1 style="margin:0;font-size:22px">Another shop</h1></header>
<main style="max-width:760px;margin:0 auto;padding:24px"><p>This shop has no backend: its chat is one script tag with a site key.</p></main>
<script src="${widgetOrigin}/widget.js" data-site-key="${key}" data-prechat="name,email"></script>
</body>
</html>
`;
}

async function openPage(viewport = DESKTOP) {
  const browser = await launchBrowser();
  browsers.push(browser);
  return { browser, page: await browser.page(viewport) };
}

function shadow(page, fn) {
  return page.evaluate(fn);
}
/** The id (or class, for the launcher) of what has focus inside the widget. */
function widgetFocus(page) {
  return shadow(page, () => {
    const a = document.querySelector("#switchboard-widget").shadowRoot.activeElement;
    return a ? a.id || a.className : null;
  });
}
async function waitForWidgetFocus(page, id) {
  await page.waitForFunction(
    (id) => document.querySelector("#switchboard-widget")?.shadowRoot.activeElement?.id === id,
    id,
  );
}
function hostAttr(page, name) {
  return page.getAttribute("#switchboard-widget", name);
}
async function storedVisitor(page) {
  return page.evaluate((k) => JSON.parse(localStorage.getItem(k) || "null"), VISITOR_KEY);
}

async function openAgentPage(token) {
  const { browser, page } = await openPage(DESKTOP);
  page.on("websocket", (ws) => ws.on("framereceived", (f) => agentFrames.push(String(f.payload))));
  await page.goto(`${server.url}/demo/agent?token=${token}`);
  await page.waitForSelector("body[data-state=online]", { state: "attached" });
  await page.waitForSelector("#inbox[aria-busy=false]", { state: "attached" });
  return { browser, page };
}

function row(page, id) {
  return page.locator(`.conv[data-conversation="${id}"]`);
}

async function conversationIds() {
  const res = await server.http("GET", "/api/v1/conversations?limit=100", { token: server.serviceToken() });
  assert.equal(res.status, 200, res.text);
  return res.body.conversations.map((c) => c.id).sort();
}

/** Opens the launcher with the keyboard: the page has nothing else to focus, so Tab lands on it. */
async function openByKeyboard(page) {
  await page.locator(".launcher").waitFor();
  await page.keyboard.press("Tab");
  assert.equal(await widgetFocus(page), "launcher");
  await page.keyboard.press("Enter");
  assert.equal(await page.locator(".launcher").getAttribute("aria-expanded"), "true");
}

async function shoot(page, name, viewport, shots) {
  await page.setViewportSize(viewport);
  const path = join(outputDir(), `${name}-${viewport.width}x${viewport.height}.png`);
  await page.screenshot({ path });
  shots.push(path);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `${name} overflows by ${overflow}px at ${viewport.width}px`);
}

before(async () => {
  // The client IP is the TCP peer: no proxy is trusted.
  delete process.env.SWITCHBOARD_TRUSTED_PROXIES;
  sitePort = await freePort();
  siteOrigin = `http://localhost:${sitePort}`;
  const sites = `${KEY}=${siteOrigin}`;
  server = await startServer({
    env: {
      SWITCHBOARD_WIDGET_SITES: sites,
      SWITCHBOARD_WIDGET_TOKEN_TTL_S: String(TTL_S),
      // Every page, reload and renewal of this file comes from 127.0.0.1: not what is tested here.
      SWITCHBOARD_WIDGET_SESSION_RATE: "600",
    },
  });
  // Thirty a minute: a burst of 30, then one every two seconds.
  limited = await startServer({ env: { SWITCHBOARD_WIDGET_SITES: sites, SWITCHBOARD_WIDGET_SESSION_RATE: "30" } });
  site = createServer((req, res) => {
    const url = new URL(req.url, siteOrigin);
    if (url.pathname !== "/") {
      res.writeHead(404).end();
      return;
    }
    const widgetOrigin = url.searchParams.get("server") === "limited" ? limited.url : server.url;
    const key = /^[a-z0-9-]+$/.test(url.searchParams.get("key") || "") ? url.searchParams.get("key") : KEY;
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
    res.end(sitePage(widgetOrigin, key));
  });
  await new Promise((resolve, reject) => {
    site.once("error", reject);
    site.listen(sitePort, "127.0.0.1", resolve);
  });
});

after(async () => {
  await Promise.all(browsers.map((b) => b.close()));
  if (site) await new Promise((resolve) => site.close(resolve));
  for (const s of [server, limited]) {
    if (!s) continue;
    if (process.env.SWITCHBOARD_TEST_LOGS) process.stderr.write(s.logs());
    await s.stop();
  }
});

describe("the widget on a site with no backend, in Chromium", () => {
  it("asks nothing of the server until the visitor fills the pre-chat form, by keyboard only", async (t) => {
    ({ browser: visitorBrowser, page: visitor } = await openPage(DESKTOP));
    visitor.on("websocket", (ws) => visitorSockets.push(ws));
    visitorSessions = recordSessions(visitor);
    await visitor.goto(`${siteOrigin}/`);
    await openByKeyboard(visitor);

    // The form comes first, labelled, and has the focus.
    const form = visitor.getByRole("form", { name: /before we start/i });
    await form.waitFor();
    assert.equal(await widgetFocus(visitor), "sb-name");
    assert.equal(await visitor.getByLabel("Name").getAttribute("id"), "sb-name");
    assert.equal(await visitor.getByLabel("Email").getAttribute("id"), "sb-email");
    assert.equal(await visitor.getByRole("textbox", { name: "Message" }).isVisible(), false);
    assert.equal(visitorSessions.seen.length, 0, "a session was asked for before the visitor started");
    assert.equal(visitorSockets.length, 0, "a socket was opened before the visitor started");

    // Typed, Tab to the next field, Enter submits; a bad email is reported on its field.
    await visitor.keyboard.type(VERA.name);
    await visitor.keyboard.press("Tab");
    assert.equal(await widgetFocus(visitor), "sb-email");
    await visitor.keyboard.type("vera.example.com");
    await visitor.keyboard.press("Enter");
    const email = visitor.getByLabel("Email");
    await visitor.locator("#sb-email[aria-invalid=true]").waitFor();
    assert.equal(await email.getAttribute("aria-describedby"), "sb-email-error");
    const error = visitor.locator("#sb-email-error");
    assert.equal(await error.isVisible(), true);
    assert.match(await error.textContent(), /valid email address/);
    assert.equal(await visitor.getByLabel("Name").getAttribute("aria-invalid"), null);
    assert.equal(await widgetFocus(visitor), "sb-email");
    assert.equal(visitorSessions.seen.length, 0, "an invalid form was sent");

    const shots = [];
    await shoot(visitor, "widget-site-form", PHONE, shots);
    await shoot(visitor, "widget-site-form", DESKTOP, shots);

    await visitor.keyboard.press("Control+A");
    await visitor.keyboard.type(VERA.email);
    assert.equal(await email.getAttribute("aria-invalid"), null, "the field is valid again once corrected");
    assert.equal(await error.isVisible(), false);
    await visitor.keyboard.press("Enter");
    const answer = await visitorSessions.nth(1);
    assert.deepEqual(answer.sent, { site_key: KEY, name: VERA.name, email: VERA.email });
    assert.equal(answer.status, 201, JSON.stringify(answer.body));
    assert.match(answer.body.visitor_id, /^[A-Za-z0-9_-]{43}$/);
    assert.ok(Date.parse(answer.body.expires_at) > Date.now(), answer.body.expires_at);
    vera = answer.body;

    // Then the chat, focus in the message box, connected to that conversation.
    await waitForWidgetFocus(visitor, "sb-input");
    assert.equal(await form.isVisible(), false);
    await visitor.waitForSelector("#switchboard-widget[data-state=online]", { state: "attached" });
    assert.equal(await hostAttr(visitor, "data-conversation"), vera.conversation_id);
    assert.deepEqual(await storedVisitor(visitor), { visitor_id: vera.visitor_id, ...VERA });
    // Nothing is stored by a session.
    const none = await server.http("GET", `/api/v1/conversations/${vera.conversation_id}`, { token: server.serviceToken() });
    assert.equal(none.status, 404, none.text);
    for (const s of shots) t.diagnostic(`screenshot: ${s}`);
  });

  it("brings the conversation to the agent at the first message, with name and email; the reply reaches the visitor", async (t) => {
    ({ browser: agentBrowser, page: agent } = await openAgentPage(server.agentToken("ana", { name: "Ana Agent" })));
    assert.equal(await row(agent, vera.conversation_id).count(), 0);
    assert.ok(!agentFrames.some((f) => f.includes(vera.conversation_id)), "the agent heard of the conversation before its first message");

    await visitor.keyboard.type(FIRST);
    await visitor.keyboard.press("Enter");
    await visitor.locator("li.mine[data-id]", { hasText: FIRST }).waitFor();

    // Live: conversation:new, then the row, without a reload of the inbox.
    await row(agent, vera.conversation_id).waitFor();
    const news = agentFrames.map((f) => JSON.parse(f)).filter((f) => f.type === "conversation:new");
    assert.deepEqual(
      news.map((f) => f.data.conversation.id),
      [vera.conversation_id],
    );
    assert.match(await row(agent, vera.conversation_id).textContent(), new RegExp(VERA.name));
    const stored = await server.http("GET", `/api/v1/conversations/${vera.conversation_id}`, { token: server.serviceToken() });
    assert.equal(stored.status, 200, stored.text);
    assert.equal(stored.body.channel, "web");
    assert.equal(stored.body.status, "open");
    assert.deepEqual(stored.body.customer, { id: `visitor:${vera.visitor_id}`, ...VERA });

    await row(agent, vera.conversation_id).click();
    await agent.locator("#messages li.customer", { hasText: FIRST }).waitFor();
    await agent.locator("#view-email", { hasText: VERA.email }).waitFor();
    assert.equal(await agent.getAttribute("#view-email", "href"), `mailto:${VERA.email}`);
    const reply = agent.getByRole("textbox", { name: "Reply" });
    await reply.fill(REPLY);
    await reply.press("Enter");
    await visitor.locator("li.theirs", { hasText: REPLY }).waitFor();
    // Once started, the widget read the conversation's state: open and unassigned, so a human can be asked for.
    await visitor.getByRole("button", { name: "Talk to a human" }).waitFor();

    const shots = [];
    await shoot(visitor, "widget-site-chat", PHONE, shots);
    await shoot(visitor, "widget-site-chat", DESKTOP, shots);
    for (const s of shots) t.diagnostic(`screenshot: ${s}`);
  });

  it("keeps the conversation and its history across a reload and in a new tab, and the chat goes on", async () => {
    const before = await widgetMessages(visitor);
    assert.deepEqual(
      before.map((m) => m.text),
      [FIRST, REPLY],
    );
    await visitor.reload();
    await visitor.waitForSelector("#switchboard-widget[data-state=online]", { state: "attached" });
    await visitor.locator("li.theirs", { hasText: REPLY }).waitFor();
    assert.equal(await hostAttr(visitor, "data-conversation"), vera.conversation_id);
    assert.deepEqual(await widgetMessages(visitor), before);
    // A returning visitor gets no form.
    assert.equal(await visitor.getByRole("form", { name: /before we start/i }).isVisible(), false);
    await waitForWidgetFocus(visitor, "sb-input");
    await visitor.keyboard.type(AFTER_RELOAD);
    await visitor.keyboard.press("Enter");
    await agent.locator("#messages li.customer", { hasText: AFTER_RELOAD }).waitFor();
    assert.deepEqual(await conversationIds(), [vera.conversation_id]);

    // A new tab of the same browser shares localStorage: the stored visitor id brings the same conversation.
    const tab = await visitorBrowser.page(DESKTOP);
    const tabSessions = recordSessions(tab);
    await tab.goto(`${siteOrigin}/`);
    const again = await tabSessions.nth(1);
    assert.deepEqual(again.sent, { site_key: KEY, name: VERA.name, email: VERA.email, visitor_id: vera.visitor_id });
    assert.equal(again.status, 201, JSON.stringify(again.body));
    assert.equal(again.body.conversation_id, vera.conversation_id);
    assert.equal(again.body.visitor_id, vera.visitor_id);
    await tab.waitForSelector("#switchboard-widget[data-state=online]", { state: "attached" });
    await tab.getByRole("button", { name: /open chat/i }).click();
    await tab.locator("li.mine[data-id]", { hasText: AFTER_RELOAD }).waitFor();
    assert.deepEqual(
      (await widgetMessages(tab)).map((m) => m.text),
      [FIRST, REPLY, AFTER_RELOAD],
    );
    assert.equal(await tab.getByRole("form", { name: /before we start/i }).isVisible(), false);
    await tab.close();
  });

  it("treats a second browser as another visitor: the form again, another conversation, none of the first one's messages", async () => {
    const { page } = await openPage(DESKTOP);
    const sessions = recordSessions(page);
    await page.goto(`${siteOrigin}/`);
    await openByKeyboard(page);
    await page.getByRole("form", { name: /before we start/i }).waitFor();
    assert.equal(await widgetFocus(page), "sb-name");
    assert.equal(sessions.seen.length, 0);
    await page.getByLabel("Name").fill(WALTER.name);
    await page.getByLabel("Email").fill(WALTER.email);
    await page.getByRole("button", { name: "Start chat" }).click();
    const answer = await sessions.nth(1);
    assert.deepEqual(answer.sent, { site_key: KEY, ...WALTER });
    assert.equal(answer.status, 201, JSON.stringify(answer.body));
    walter = answer.body;
    assert.notEqual(walter.visitor_id, vera.visitor_id);
    assert.notEqual(walter.conversation_id, vera.conversation_id);
    await waitForWidgetFocus(page, "sb-input");
    await page.waitForSelector("#switchboard-widget[data-state=online]", { state: "attached" });
    await page.keyboard.type(WALTER_SAYS);
    await page.keyboard.press("Enter");
    await page.locator("li.mine[data-id]", { hasText: WALTER_SAYS }).waitFor();
    await row(agent, walter.conversation_id).waitFor();
    assert.match(await row(agent, walter.conversation_id).textContent(), new RegExp(WALTER.name));

    assert.deepEqual(
      (await widgetMessages(page)).map((m) => m.text),
      [WALTER_SAYS],
    );
    for (const text of [FIRST, REPLY, AFTER_RELOAD]) assert.equal(await page.getByText(text).count(), 0);
    // Nor can its token read them.
    for (const path of [`/api/v1/conversations/${vera.conversation_id}`, `/api/v1/conversations/${vera.conversation_id}/messages`]) {
      const res = await server.http("GET", path, { token: walter.token });
      assert.equal(res.status, 403, `${path}: ${res.text}`);
    }
    assert.deepEqual(await conversationIds(), [vera.conversation_id, walter.conversation_id].sort());
  });

  it("lets a visitor open a session and write nothing: nothing is stored, no agent hears of it", async () => {
    const { page } = await openPage(DESKTOP);
    quiet.page = page;
    page.on("websocket", (ws) => quiet.sockets.push(ws));
    quiet.sessions = recordSessions(page);
    await page.goto(`${siteOrigin}/`);
    await openByKeyboard(page);
    await page.getByLabel("Name").fill("Quentin Quiet");
    await page.getByLabel("Email").fill("quentin@example.com");
    await page.getByLabel("Email").press("Enter");
    quiet.first = (await quiet.sessions.nth(1)).body;
    await page.waitForSelector("#switchboard-widget[data-state=online]", { state: "attached" });
    assert.equal(await hostAttr(page, "data-conversation"), quiet.first.conversation_id);
    assert.deepEqual(await conversationIds(), [vera.conversation_id, walter.conversation_id].sort());
    assert.equal(await row(agent, quiet.first.conversation_id).count(), 0);
  });

  /** A visitor on `url` fills the form; the widget must say `text` (code `code`, HTTP `status`) and create nothing. */
  async function refusedVisit(url, { name, status, code, text }) {
    const { browser, page } = await openPage(DESKTOP);
    refusedBrowsers.add(browser);
    const sessions = recordSessions(page);
    const idsBefore = await conversationIds();
    await page.goto(url);
    await openByKeyboard(page);
    await page.getByLabel("Name").fill(name);
    await page.getByLabel("Email").fill(`${name.toLowerCase()}@example.com`);
    await page.getByLabel("Email").press("Enter");
    // The widget can say why only if it can read the refusal (CORS lets every origin see it).
    const alert = page.locator("[role=alert][data-code]");
    await alert.waitFor();
    assert.deepEqual([await alert.getAttribute("data-code"), await alert.textContent()], [code, text]);
    const answer = await sessions.nth(1);
    assert.equal(answer.status, status);
    assert.equal(answer.body?.error?.code, code);
    // The form stays, with the focus where it was, for a visitor who tries again.
    assert.equal(await page.getByRole("form", { name: /before we start/i }).isVisible(), true);
    assert.equal(await widgetFocus(page), "sb-email");
    assert.equal(await hostAttr(page, "data-conversation"), null);
    assert.deepEqual(await conversationIds(), idsBefore);
    // Chromium reports the refused request itself: once, and nothing else.
    assert.deepEqual(
      browser.problems.map((p) => REFUSED_RESOURCE.test(p)),
      [true],
      browser.problems.join("\n"),
    );
  }

  it("says why a page with an unknown site key cannot chat; nothing is created", async () => {
    await refusedVisit(`${siteOrigin}/?key=no-such-key`, {
      name: "Nobody",
      status: 401,
      code: "invalid_site_key",
      text: "This chat is not set up correctly: its site key is unknown.",
    });
  });

  it("says why a page of an origin the site key does not allow cannot chat; nothing is created", async () => {
    // Same port, another host string: another origin, not in the list.
    await refusedVisit(`http://127.0.0.1:${sitePort}/`, {
      name: "Mallory",
      status: 403,
      code: "origin_not_allowed",
      text: "This site is not allowed to use the chat.",
    });
  });

  it("renews the visitor's token before it expires, keeping its socket", async () => {
    const socketsBefore = visitorSockets.length;
    const live = visitorSockets[socketsBefore - 1];
    const seenBefore = visitorSessions.seen.length;
    firstRenewal = seenBefore;
    // Within 80% of the token's life, by the widget's own timer.
    const renewal = await visitorSessions.nth(seenBefore + 1, TTL_S * 1000);
    assert.equal(renewal.status, 201, JSON.stringify(renewal.body));
    assert.deepEqual(renewal.sent, { site_key: KEY, name: VERA.name, email: VERA.email, visitor_id: vera.visitor_id });
    assert.equal(renewal.body.conversation_id, vera.conversation_id);
    assert.notEqual(renewal.body.token, vera.token);
    assert.equal(visitorSockets.length, socketsBefore, "the renewal opened a socket");
    assert.equal(live.isClosed(), false, "the renewal closed the socket");
    assert.equal(await hostAttr(visitor, "data-state"), "online");
  });

  it("moves a visitor who wrote nothing to the renewal's new conversation, quietly, and its first message starts that one", async () => {
    const { page, sockets, sessions, first } = quiet;
    const renewal = await sessions.nth(2, TTL_S * 1000);
    assert.equal(renewal.status, 201, JSON.stringify(renewal.body));
    assert.equal(renewal.sent.visitor_id, first.visitor_id);
    // Nothing was stored for the first id, so the same visitor gets a new one.
    assert.notEqual(renewal.body.conversation_id, first.conversation_id);
    await page.waitForSelector(`#switchboard-widget[data-conversation="${renewal.body.conversation_id}"][data-state=online]`, {
      state: "attached",
    });
    // A conversation on the socket's token only: a new socket with the new token.
    const used = new URL(sockets[sockets.length - 1].url()).searchParams.get("token");
    assert.equal(used, renewal.body.token);
    assert.equal(await page.locator("li.notice").count(), 0, "the visitor was told of a switch it had no reason to see");
    await page.getByRole("textbox", { name: "Message" }).fill("Hello at last");
    await page.getByRole("textbox", { name: "Message" }).press("Enter");
    await page.locator("li.mine[data-id]", { hasText: "Hello at last" }).waitFor();
    await row(agent, renewal.body.conversation_id).waitFor();
    const ids = await conversationIds();
    assert.ok(ids.includes(renewal.body.conversation_id));
    assert.ok(!ids.includes(first.conversation_id), "the first, unused id was stored");
  });

  it("reconnects a visitor with its renewed token", async () => {
    const reconnecting = visitor.waitForEvent("websocket", { timeout: 30_000 });
    await server.restart();
    const socket = await reconnecting;
    await visitor.waitForSelector("#switchboard-widget[data-state=online]", { state: "attached" });
    const used = new URL(socket.url()).searchParams.get("token");
    const renewed = visitorSessions.seen.slice(firstRenewal).map((s) => s.body?.token);
    assert.ok(renewed.includes(used), "the reconnect used a token from before the renewal");
    await agent.waitForSelector("body[data-state=online]", { state: "attached" });
    await visitor.keyboard.type("Still there after the restart?");
    await visitor.keyboard.press("Enter");
    await agent.locator("#messages li.customer", { hasText: "Still there after the restart?" }).waitFor();
    assert.deepEqual(
      (await agentMessages(agent)).map((m) => m.text),
      [FIRST, REPLY, AFTER_RELOAD, "Still there after the restart?"],
    );
  });

  it("says politely when sessions are over the rate, and starts by itself after Retry-After", async () => {
    const { browser, page } = await openPage(DESKTOP);
    const sessions = recordSessions(page);
    await page.goto(`${siteOrigin}/?server=limited`);
    await openByKeyboard(page);
    await page.getByLabel("Name").fill("Patience");
    await page.getByLabel("Email").fill("patience@example.com");

    refusedBrowsers.add(browser);

    // Someone else at this IP uses up the sessions, and goes on taking each one as it comes back.
    let draining = true;
    let sawLimit;
    const limitSeen = new Promise((resolve) => (sawLimit = resolve));
    const drainer = (async () => {
      while (draining) {
        const res = await limited.http("POST", "/api/v1/widget/sessions", { json: { site_key: KEY } });
        if (res.status === 429) sawLimit();
      }
    })();
    let wait;
    try {
      await limitSeen;
      await page.getByLabel("Email").press("Enter");
      const first = await sessions.nth(1);
      assert.equal(first.status, 429, JSON.stringify(first.body));
      assert.equal(first.body?.error?.code, "rate_limited");
      wait = Number(first.headers["retry-after"]);
      assert.ok(wait >= 1, `Retry-After: ${first.headers["retry-after"]}`);
      // The widget waits what the server said: it must be able to read Retry-After cross-origin.
      const alert = page.locator("[role=alert][data-code=rate_limited]");
      await alert.waitFor();
      assert.match(await alert.textContent(), new RegExp(`try again in ${wait} seconds?,`));
    } finally {
      draining = false;
      await drainer;
    }

    // Asked again by the widget itself, once the time is up.
    const second = await sessions.nth(2, (wait + 10) * 1000);
    assert.equal(second.status, 201, JSON.stringify(second.body));
    await waitForWidgetFocus(page, "sb-input");
    assert.equal(await hostAttr(page, "data-conversation"), second.body.conversation_id);
    await page.getByRole("alert").filter({ hasText: /./ }).waitFor({ state: "hidden" });

  });

  it("logged no errors in any page (CSP, exceptions, failed requests), but the refusals meant", () => {
    assert.deepEqual(
      browsers.flatMap((b) => b.problems.filter((p) => !(refusedBrowsers.has(b) && REFUSED_RESOURCE.test(p)))),
      [],
    );
  });
});
