// The support inbox in a real browser: two agents' pages (/demo/agent) and a
// customer's widget (/demo/) on one server. Claiming, a refused second claim,
// transfer, private notes, unread counts, close and reopen, availability.
// Debian's Chromium, headless, driven by playwright-core. Everything waits on
// DOM conditions or on the server's answers, never on time.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startServer } from "../lib/server.mjs";
import { DESKTOP, PHONE, agentMessages, launchBrowser, outputDir, widgetMessages } from "./browser.mjs";

const suffix = randomUUID().slice(0, 8);
const CONV = `inbox-${suffix}`;
const OTHER = `inbox-other-${suffix}`;
const ANA = { id: `ana-${suffix}`, name: "Ana Agent" };
const BEN = { id: `ben-${suffix}`, name: "Ben Agent" };
const CARLA = { id: `carla-${suffix}`, name: "Carla Customer" };
const NOTE = "VIP customer: refund approved by finance";
const REPLY = "Your refund is on its way, Carla.";
let server, widget, ana, ben, anaToken, benToken, customerToken, widgetUrl;
/** One browser per person, as in real life: each page is its window's front page. */
const browsers = [];
/** Every WebSocket frame the customer's browser received: what the server sent, before the widget's own filtering. */
const customerFrames = [];

/** A condition on the server's state, for what no page shows: polled until true or 5 s. */
async function until(what, probe) {
  const deadline = Date.now() + 5000;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last.ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`${what}: last seen ${JSON.stringify(last.seen)}`);
}

async function stored(id) {
  const res = await server.http("GET", `/api/v1/conversations/${id}`, { token: server.serviceToken() });
  assert.equal(res.status, 200, res.text);
  return res.body;
}

/** The unread count the server gives `token`'s agent for `id` in the list at `query`. */
async function unreadOnServer(token, id, query = "") {
  const res = await server.http("GET", `/api/v1/conversations?limit=100${query}`, { token });
  assert.equal(res.status, 200, res.text);
  const c = res.body.conversations.find((c) => c.id === id);
  assert.ok(c, `${id} not in the list at ?${query}`);
  return c.unread;
}

async function agentsOnServer() {
  const res = await server.http("GET", "/api/v1/agents", { token: server.serviceToken() });
  assert.equal(res.status, 200, res.text);
  return Object.fromEntries(res.body.agents.map((a) => [a.id, a]));
}

async function openPage(viewport) {
  const browser = await launchBrowser();
  browsers.push(browser);
  return browser.page(viewport);
}

async function openAgentPage(token) {
  const page = await openPage(DESKTOP);
  await page.goto(`${server.url}/demo/agent?token=${token}`);
  await page.waitForSelector("body[data-state=online]", { state: "attached" });
  await page.waitForSelector("#inbox[aria-busy=false]", { state: "attached" });
  return page;
}

function row(page, id) {
  return page.locator(`.conv[data-conversation="${id}"]`);
}

function unreadBadge(page, id) {
  return page.locator(`.conv.unread[data-conversation="${id}"] .count`);
}

/** Picks a tab; resolves once that view's list is loaded. */
async function chooseTab(page, name) {
  const tab = page.getByRole("tab", { name, exact: true });
  await tab.click();
  await page.waitForSelector("#inbox[aria-busy=false]", { state: "attached" });
  await assertSelectedTab(page, name);
}

async function assertSelectedTab(page, name) {
  const selected = await page.getByRole("tab").evaluateAll((tabs) => tabs.map((t) => [t.textContent, t.getAttribute("aria-selected")]));
  assert.deepEqual(
    selected,
    ["Mine", "Unassigned", "All"].map((t) => [t, String(t === name)]),
  );
}

function assertContiguous(messages, what) {
  messages.forEach((m, i) => assert.equal(m.offset, i + 1, `${what}: offsets ${messages.map((m) => m.offset)}`));
}

before(async () => {
  server = await startServer();
  await server.createConversation({ id: CONV, customer: CARLA });
  await server.createConversation({ id: OTHER, customer: { id: `dora-${suffix}`, name: "Dora Other" } });
  anaToken = server.agentToken(ANA.id, { name: ANA.name });
  benToken = server.agentToken(BEN.id, { name: BEN.name });
  customerToken = server.customerToken(CARLA.id, { name: CARLA.name, conversations: [CONV] });
  widgetUrl = `${server.url}/demo/?token=${customerToken}&conversation=${CONV}`;
});

after(async () => {
  await Promise.all(browsers.map((b) => b.close()));
  if (server) {
    if (process.env.SWITCHBOARD_TEST_LOGS) process.stderr.write(server.logs());
    await server.stop();
  }
});

describe("the support inbox in Chromium: two agents and a customer", () => {
  it("lists the new conversation on both agents' Unassigned tab, the customer's message unread", async () => {
    ana = await openAgentPage(anaToken);
    ben = await openAgentPage(benToken);
    await assertSelectedTab(ana, "All");
    // The tab list works from the keyboard: an arrow key moves to and selects the next tab.
    await ana.getByRole("tab", { name: "All" }).focus();
    await ana.keyboard.press("ArrowLeft");
    await ana.waitForSelector("#inbox[aria-busy=false]", { state: "attached" });
    await assertSelectedTab(ana, "Unassigned");
    assert.equal(await ana.evaluate(() => document.activeElement?.id), "tab-unassigned");
    await chooseTab(ben, "Unassigned");
    for (const page of [ana, ben]) {
      await row(page, CONV).waitFor();
      assert.equal(await row(page, CONV).getAttribute("data-status"), "open");
      assert.match(await row(page, CONV).textContent(), /Unassigned/);
      assert.equal(await unreadBadge(page, CONV).count(), 0);
    }

    widget = await openPage(DESKTOP);
    widget.on("websocket", (ws) => ws.on("framereceived", (frame) => customerFrames.push(String(frame.payload))));
    await widget.goto(widgetUrl);
    await widget.waitForSelector("#switchboard-widget[data-state=online]", { state: "attached" });
    await widget.getByRole("button", { name: /open chat/i }).click();
    const message = widget.getByRole("textbox", { name: "Message" });
    await message.fill("Hi, I was charged twice for order #77");
    await message.press("Enter");
    for (const page of [ana, ben]) {
      await unreadBadge(page, CONV).waitFor();
      assert.equal(await unreadBadge(page, CONV).textContent(), "1");
      await row(page, CONV).filter({ hasText: "charged twice" }).waitFor();
    }
    assert.equal(await unreadOnServer(anaToken, CONV, "&assignee=none"), 1);
  });

  it("shows the customer's request for a human as pending, on the widget and in both lists", async () => {
    const human = widget.getByRole("button", { name: "Talk to a human" });
    await human.click();
    await widget.locator(".sub[data-status=pending]", { hasText: "Waiting for an agent…" }).waitFor();
    await human.waitFor({ state: "hidden" });
    for (const page of [ana, ben]) {
      await page.locator(`.conv[data-conversation="${CONV}"][data-status=pending]`).waitFor();
    }
    assert.equal((await stored(CONV)).status, "pending");
  });

  it("lets Ana claim it from the Unassigned tab; the widget says she joined", async () => {
    await ana.getByRole("button", { name: `Claim conversation with ${CARLA.name}` }).click();
    // Assigned, it leaves both Unassigned lists.
    for (const page of [ana, ben]) await row(page, CONV).waitFor({ state: "detached" });
    await ana.locator("#view-assignee", { hasText: "Assigned to you" }).waitFor();
    // A pending conversation that gets an assignee is open again.
    await ana.locator("#view-status[data-status=open]").waitFor();
    await widget.locator("li.notice", { hasText: `${ANA.name} joined` }).waitFor();
    await widget.locator(".sub[data-status=open]", { hasText: `Chatting with ${ANA.name}` }).waitFor();
    assert.equal(await widget.getByRole("button", { name: "Talk to a human" }).isVisible(), false);
    const now = await stored(CONV);
    assert.deepEqual([now.status, now.assignee], ["open", ANA]);

    // Opening it read it: once her receipt is in, her Mine tab has no badge and the server counts 0.
    await widget.locator("li.mine .receipt[data-status=read]").waitFor();
    await until("Ana's unread count after opening", async () => {
      const n = await unreadOnServer(anaToken, CONV, "&assignee=me");
      return { ok: n === 0, seen: n };
    });
    await chooseTab(ana, "Mine");
    await row(ana, CONV).waitFor();
    assert.equal(await row(ana, CONV).getAttribute("data-assignee"), ANA.id);
    assert.equal(await unreadBadge(ana, CONV).count(), 0);
  });

  it("refuses Ben's claim of Ana's conversation with the conflict, and changes nothing", async () => {
    await chooseTab(ben, "All");
    assert.equal(await row(ben, CONV).getAttribute("data-assignee"), ANA.id);
    await row(ben, CONV).click();
    await ben.locator("#view-assignee", { hasText: `Assigned to ${ANA.name}` }).waitFor();
    await ben.getByRole("button", { name: "Claim", exact: true }).click();
    await ben.getByRole("alert").filter({ hasText: "Another agent is already handling this conversation" }).waitFor();
    assert.deepEqual((await stored(CONV)).assignee, ANA);
    await ben.locator("#view-assignee", { hasText: `Assigned to ${ANA.name}` }).waitFor();
  });

  it("lets Ana transfer it to Ben: it arrives live in Ben's Mine tab, and the widget says Ben joined", async () => {
    await chooseTab(ben, "Mine");
    assert.equal(await row(ben, CONV).count(), 0);
    await ben.locator("#empty-list", { hasText: "Nothing assigned to you." }).waitFor();

    await ana.locator(`#transfer-to option[value="${BEN.id}"]`).waitFor({ state: "attached" });
    await ana.getByLabel("Transfer to").selectOption(BEN.id);
    await ana.getByRole("button", { name: "Transfer", exact: true }).click();
    await row(ben, CONV).waitFor();
    assert.equal(await row(ben, CONV).getAttribute("data-assignee"), BEN.id);
    await row(ana, CONV).waitFor({ state: "detached" });
    await ben.locator("#view-assignee", { hasText: "Assigned to you" }).waitFor();
    await ana.locator("#view-assignee", { hasText: `Assigned to ${BEN.name}` }).waitFor();
    await widget.locator("li.notice", { hasText: `${BEN.name} joined` }).waitFor();
    await widget.locator(".sub", { hasText: `Chatting with ${BEN.name}` }).waitFor();
    assert.deepEqual((await stored(CONV)).assignee, BEN);
    assert.equal(await ana.getByLabel("Transfer to").inputValue(), "", "the select is ready for the next transfer");
    // Ben had read it when he opened it: the count the server gave with it is 0.
    await ben.waitForSelector("#inbox[aria-busy=false]", { state: "attached" });
    assert.equal(await unreadBadge(ben, CONV).count(), 0);
    assert.equal(await unreadOnServer(benToken, CONV, "&assignee=me"), 0);
    // Ana keeps an eye on everything from the All tab.
    await chooseTab(ana, "All");
    await row(ana, CONV).waitFor();
  });

  it("keeps Ben's private note among staff and sends his reply to the widget", async () => {
    const reply = ben.getByRole("textbox", { name: "Reply" });
    await ben.getByLabel("Private note").check();
    await reply.fill(NOTE);
    await reply.press("Enter");
    const note = ben.locator("#messages li.note[data-id]", { hasText: NOTE });
    await note.waitFor();
    assert.equal(await note.locator(".note-label").textContent(), "Note");
    // Ana still has the conversation open: staff see notes live.
    await ana.locator("#messages li.note[data-id]", { hasText: NOTE }).waitFor();

    await ben.getByLabel("Private note").uncheck();
    await reply.fill(REPLY);
    await reply.press("Enter");
    const public_ = ben.locator("#messages li.staff[data-id]", { hasText: REPLY });
    await public_.waitFor();
    const [noteBackground, replyBackground] = await Promise.all(
      [note, public_].map((l) => l.evaluate((li) => getComputedStyle(li).backgroundColor)),
    );
    assert.notEqual(noteBackground, replyBackground, "a note looks different from a reply");
    await ana.locator("#messages li.staff[data-id]", { hasText: REPLY }).waitFor();

    // The reply was sent after the note, so had the note been sent to the widget it would be there by now.
    await widget.locator("li.theirs", { hasText: REPLY }).waitFor();
    const noteOffset = Number(await note.getAttribute("data-offset"));
    const seen = await widgetMessages(widget);
    assert.deepEqual(
      seen.map((m) => m.text),
      ["Hi, I was charged twice for order #77", REPLY],
    );
    assert.equal(seen[1].offset, noteOffset + 1, "the customer's offsets skip the note's");
    assert.equal(await widget.getByText(NOTE).count(), 0);
    assert.ok(customerFrames.some((f) => f.includes(REPLY)), "the customer's frames are recorded");
    assert.deepEqual(
      customerFrames.filter((f) => f.includes(NOTE)),
      [],
      "the server sent the note to the customer",
    );
    const history = await server.http("GET", `/api/v1/conversations/${CONV}/messages`, { token: customerToken });
    assert.equal(history.status, 200, history.text);
    assert.deepEqual(
      history.body.messages.map((m) => m.text),
      seen.map((m) => m.text),
    );
    // Staff see one timeline, without holes.
    assertContiguous(await agentMessages(ben), "Ben's timeline");
    assertContiguous(await agentMessages(ana), "Ana's timeline");

    // Reloaded, the widget shows the same history and, from the server, who is handling it.
    await widget.reload();
    await widget.waitForSelector("#switchboard-widget[data-state=online]", { state: "attached" });
    await widget.locator("li.theirs", { hasText: REPLY }).waitFor();
    await widget.locator(".sub[data-status=open]", { hasText: `Chatting with ${BEN.name}` }).waitFor();
    assert.deepEqual(await widgetMessages(widget), seen);
    assert.deepEqual(
      customerFrames.filter((f) => f.includes(NOTE)),
      [],
      "the server sent the note to the customer on rejoin",
    );
  });

  it("counts a customer message unread in Ana's list until she opens it", async () => {
    // Ana reads another conversation; Ben keeps this one open.
    await row(ana, OTHER).click();
    await ana.locator("#view-title", { hasText: "Dora Other" }).waitFor();
    const message = widget.getByRole("textbox", { name: "Message" });
    await message.fill("Thank you! When will it show on my card?");
    await message.press("Enter");

    await unreadBadge(ana, CONV).waitFor();
    assert.equal(await unreadBadge(ana, CONV).textContent(), "1");
    assert.match(await row(ana, CONV).textContent(), /1 unread/);
    await until("Ana's unread count on the server", async () => {
      const n = await unreadOnServer(anaToken, CONV);
      return { ok: n === 1, seen: n };
    });
    // Ben has it open: he reads it at once.
    await ben.locator("#messages li.customer", { hasText: "show on my card" }).waitFor();
    assert.equal(await unreadBadge(ben, CONV).count(), 0);

    await row(ana, CONV).click();
    await ana.locator("#messages li.customer", { hasText: "show on my card" }).waitFor();
    await unreadBadge(ana, CONV).waitFor({ state: "detached" });
    await until("Ana's unread count after opening", async () => {
      const n = await unreadOnServer(anaToken, CONV);
      return { ok: n === 0, seen: n };
    });
    // A fresh list says the same.
    await chooseTab(ana, "Mine");
    await chooseTab(ana, "All");
    await row(ana, CONV).waitFor();
    assert.equal(await unreadBadge(ana, CONV).count(), 0);
  });

  it("closes the conversation for the widget, and reopens it into Ben's Mine tab", async () => {
    await ben.getByRole("button", { name: "Close", exact: true }).click();
    await widget.locator("li.notice", { hasText: "Conversation closed" }).waitFor();
    await widget.locator(".sub[data-status=closed]", { hasText: "Conversation closed" }).waitFor();
    await ben.locator("#view-status[data-status=closed]").waitFor();
    // Closed, it leaves Mine; All still lists it.
    await row(ben, CONV).waitFor({ state: "detached" });
    await ana.locator(`.conv[data-conversation="${CONV}"][data-status=closed]`).waitFor();
    // The button that was pressed is gone: focus is on the one that undoes it.
    await ben.waitForFunction(() => document.activeElement?.id === "reopen");
    assert.equal((await stored(CONV)).status, "closed");

    await ben.keyboard.press("Enter");
    await widget.locator("li.notice", { hasText: "Conversation reopened" }).waitFor();
    await widget.locator(".sub[data-status=open]", { hasText: `Chatting with ${BEN.name}` }).waitFor();
    await row(ben, CONV).waitFor();
    await ana.locator(`.conv[data-conversation="${CONV}"][data-status=open]`).waitFor();
    const now = await stored(CONV);
    assert.deepEqual([now.status, now.assignee], ["open", BEN]);
  });

  it("sets what GET /api/v1/agents answers with the availability switch", async () => {
    let agents = await agentsOnServer();
    assert.deepEqual(
      [agents[ANA.id]?.availability, agents[BEN.id]?.availability],
      ["online", "online"],
    );
    assert.deepEqual([agents[ANA.id].open_assigned, agents[BEN.id].open_assigned], [0, 1]);
    const available = ben.getByRole("switch", { name: "Available" });
    assert.equal(await available.isChecked(), true);

    // From the keyboard: Space flips it.
    await available.focus();
    await ben.keyboard.press("Space");
    await ben.locator("#available[data-availability=away]").waitFor();
    agents = await agentsOnServer();
    assert.deepEqual([agents[ANA.id].availability, agents[BEN.id].availability], ["online", "away"]);

    await available.click();
    await ben.locator("#available[data-availability=online]").waitFor();
    agents = await agentsOnServer();
    assert.equal(agents[BEN.id].availability, "online");
  });

  it("writes screenshots of the agent pages and of the widget at desktop and phone sizes", async (t) => {
    const dir = outputDir();
    const shots = [];
    const shoot = async (page, name, viewport) => {
      await page.setViewportSize(viewport);
      const path = join(dir, `${name}-${viewport.width}x${viewport.height}.png`);
      await page.screenshot({ path, animations: "disabled" });
      shots.push(path);
    };
    await shoot(ben, "inbox-agent-ben", DESKTOP);
    await shoot(ana, "inbox-agent-ana", DESKTOP);
    await shoot(widget, "inbox-widget", DESKTOP);
    await shoot(widget, "inbox-widget", PHONE);
    await shoot(ben, "inbox-agent-ben", PHONE);
    for (const page of [widget, ben]) {
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${page.url()} overflows by ${overflow}px at phone width`);
    }
    for (const s of shots) t.diagnostic(`screenshot: ${s}`);
  });

  it("shows an agent with no page open as offline", async () => {
    await ben.close();
    await until("Ben offline once his page is closed", async () => {
      const agents = await agentsOnServer();
      return { ok: agents[BEN.id]?.availability === "offline", seen: agents[BEN.id] };
    });
    assert.equal((await agentsOnServer())[ANA.id].availability, "online");
  });

  it("logged no errors in any page (CSP, exceptions)", () => {
    assert.deepEqual(
      browsers.flatMap((b) => b.problems),
      [],
    );
  });
});
