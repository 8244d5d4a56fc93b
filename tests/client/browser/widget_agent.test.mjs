// The widget (/demo/) and the agent inbox (/demo/agent) in a real browser:
// Debian's Chromium, headless, driven by playwright-core. Everything waits on
// DOM conditions, never on time.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { get } from "node:http";
import { gzipSync } from "node:zlib";
import { after, before, describe, it } from "node:test";
import { startServer } from "../lib/server.mjs";
import { DESKTOP, PHONE, agentMessages, launchBrowser, outputDir, widgetMessages } from "./browser.mjs";

const suffix = randomUUID().slice(0, 8);
const CONV = `web-${suffix}`;
const WA_CONV = `wa-${suffix}`;
let server, browser, customer, agent, customerUrl, agentUrl;

/** Offsets ascending, contiguous, each message once. */
function assertInOrder(messages, what) {
  const ids = new Set(messages.map((m) => m.id));
  assert.equal(ids.size, messages.length, `${what}: a message shown twice`);
  messages.forEach((m, i) => assert.equal(m.offset, i + 1, `${what}: offsets ${messages.map((m) => m.offset)}`));
}

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  await server.createConversation({ id: CONV, customer: { id: "carla", name: "Carla Customer" } });
  await server.createConversation({
    id: WA_CONV,
    channel: "whatsapp",
    customer: { id: "wa-5215550002", name: "Walter WhatsApp", phone: "5215550002" },
  });
  await server.postMessage(WA_CONV, "Hola, ¿tienen envío a Monterrey?", { token: server.serviceToken() });
  const customerToken = server.customerToken("carla", { name: "Carla Customer", conversations: [CONV] });
  const agentToken = server.agentToken("ana", { name: "Ana Agent" });
  customerUrl = `${server.url}/demo/?token=${customerToken}&conversation=${CONV}`;
  agentUrl = `${server.url}/demo/agent?token=${agentToken}`;
});

after(async () => {
  if (browser) await browser.close();
  if (server) {
    if (process.env.SWITCHBOARD_TEST_LOGS) process.stderr.write(server.logs());
    await server.stop();
  }
});

describe("widget and agent inbox in Chromium", () => {
  it("serves the pages and the widget with their content types and caching", async () => {
    const widget = await server.http("GET", "/widget.js");
    assert.equal(widget.status, 200);
    assert.match(widget.headers.get("content-type"), /^text\/javascript/);
    assert.match(widget.headers.get("cache-control"), /max-age=\d+/);
    const etag = widget.headers.get("etag");
    assert.ok(etag);
    const again = await server.http("GET", "/widget.js", { headers: { "if-none-match": etag } });
    assert.equal(again.status, 304);
    for (const path of ["/demo/", "/demo/agent"]) {
      const res = await server.http("GET", path);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type"), /^text\/html/);
      assert.equal(res.headers.get("cache-control"), "no-store");
    }
    const agentJs = await server.http("GET", "/demo/agent.js");
    assert.match(agentJs.headers.get("content-type"), /^text\/javascript/);
    // A token is text in an attribute, never markup.
    const hostile = await server.http("GET", `/demo/?token=${encodeURIComponent('"><b>x')}`);
    assert.ok(!hostile.text.includes('"><b>x'));
  });

  it("measures what the widget costs to transfer", async (t) => {
    // node:http, not fetch: fetch would undo the compression before we count.
    const { bytes, encoding } = await new Promise((resolve, reject) => {
      get(`${server.url}/widget.js`, { headers: { "accept-encoding": "gzip" } }, (res) => {
        let n = 0;
        res.on("data", (chunk) => (n += chunk.length));
        res.on("end", () => resolve({ bytes: n, encoding: res.headers["content-encoding"] || "identity" }));
      }).on("error", reject);
    });
    const raw = (await server.http("GET", "/widget.js")).text;
    const gzip = gzipSync(Buffer.from(raw), { level: 9 }).length;
    const line = `widget.js: ${bytes} bytes transferred (content-encoding ${encoding}); ${gzip} bytes if gzipped`;
    t.diagnostic(line);
    writeFileSync(join(outputDir(), "widget-size.txt"), `${line}\n`);
    assert.equal(encoding, "gzip", "the edge compresses the widget for browsers that take gzip");
    assert.ok(bytes < 40_000, line);
  });

  it("shows a customer page and an agent page side by side, each message on the other side", async () => {
    customer = await browser.page(DESKTOP);
    agent = await browser.page(DESKTOP);
    await customer.goto(customerUrl);
    await customer.waitForSelector("#switchboard-widget[data-state=online]", { state: "attached" });
    await customer.getByRole("button", { name: /open chat/i }).click();
    const message = customer.getByRole("textbox", { name: "Message" });
    await message.waitFor();
    // The launcher's panel is keyboard-first: the input has focus once opened.
    assert.equal(await customer.evaluate(() => document.querySelector("#switchboard-widget").shadowRoot.activeElement?.id), "sb-input");

    await agent.goto(agentUrl);
    await agent.waitForSelector("body[data-state=online]", { state: "attached" });
    await agent.waitForSelector(`.conv[data-conversation="${CONV}"]`);
    // WhatsApp conversations are marked as such; web ones as web.
    await agent.waitForSelector(`.conv[data-conversation="${WA_CONV}"] .channel[data-channel=whatsapp]`);
    await agent.waitForSelector(`.conv[data-conversation="${CONV}"] .channel[data-channel=web]`);
    await agent.click(`.conv[data-conversation="${CONV}"]`);
    await agent.waitForSelector("#composer:not([hidden])");

    // Customer -> agent, sent with Enter.
    await message.fill("Hi, my order #1234 has not arrived");
    await message.press("Enter");
    await agent.locator("#messages li.customer", { hasText: "order #1234" }).waitFor();
    await customer.locator("li.mine[data-id]", { hasText: "order #1234" }).waitFor();

    // Agent -> customer, sent with Enter.
    const reply = agent.getByRole("textbox", { name: "Reply" });
    await reply.fill("Sorry about that, Carla! Let me check.");
    await reply.press("Enter");
    await customer.locator("li.theirs", { hasText: "Let me check" }).waitFor();
    await agent.locator("#messages li.staff[data-id]", { hasText: "Let me check" }).waitFor();

    // Read receipts both ways: each side has the other's message on screen.
    await customer.locator("li.mine .receipt[data-status=read]").waitFor();
    await agent.locator("#messages li.staff .receipt[data-status=read]").waitFor();
  });

  it("shows the typing indicator on both sides", async () => {
    const message = customer.getByRole("textbox", { name: "Message" });
    await message.pressSequentially("Also, can I", { delay: 0 });
    await agent.waitForFunction(() => /Carla Customer is typing/.test(document.querySelector("#typing").textContent));
    await message.fill("");
    await message.dispatchEvent("input");
    await agent.waitForFunction(() => document.querySelector("#typing").textContent === "");

    const reply = agent.getByRole("textbox", { name: "Reply" });
    await reply.pressSequentially("One moment", { delay: 0 });
    await customer.waitForFunction(() =>
      /Ana Agent is typing/.test(document.querySelector("#switchboard-widget").shadowRoot.querySelector(".typing").textContent),
    );
    await reply.press("Enter");
    await customer.locator("li.theirs", { hasText: "One moment" }).waitFor();
    // A message from the typist ends the indicator.
    await customer.waitForFunction(
      () => document.querySelector("#switchboard-widget").shadowRoot.querySelector(".typing").textContent === "",
    );
  });

  it("keeps the inbox live: new conversations and updates arrive without a reload", async () => {
    const id = `wa-new-${suffix}`;
    await server.createConversation({
      id,
      channel: "whatsapp",
      customer: { id: "wa-5215550003", name: "Nora Nueva", phone: "5215550003" },
    });
    await agent.waitForSelector(`.conv[data-conversation="${id}"] .channel[data-channel=whatsapp]`);
    await server.postMessage(id, "Necesito ayuda con mi pedido");
    await agent.locator(`.conv[data-conversation="${id}"]`, { hasText: "Necesito ayuda" }).waitFor();
    await agent.waitForSelector(`.conv.unread[data-conversation="${id}"]`);
    // Most recently active first.
    assert.equal(await agent.getAttribute("#conversations li:first-child .conv", "data-conversation"), id);
  });

  it("shows the history again when the customer page is reloaded", async () => {
    const before = await widgetMessages(customer);
    assert.equal(before.length, 3);
    await customer.reload();
    await customer.waitForSelector("#switchboard-widget[data-state=online]", { state: "attached" });
    // The panel stays open across a reload and shows what was said.
    await customer.locator("li.theirs", { hasText: "One moment" }).waitFor();
    const afterReload = await widgetMessages(customer);
    assert.deepEqual(afterReload, before);
    assertInOrder(afterReload, "after reload");
  });

  it("recovers what was sent while the server restarted, each message once and in order", async () => {
    const restarting = server.restart();
    await customer.waitForSelector("#switchboard-widget[data-state=offline]", { state: "attached" });
    await agent.waitForSelector("body[data-state=offline]", { state: "attached" });
    // Typed while offline: kept, and sent once the widget is back.
    const message = customer.getByRole("textbox", { name: "Message" });
    await message.fill("Typed while you were away");
    await message.press("Enter");
    await customer.locator("li.pending", { hasText: "Typed while you were away" }).waitFor();
    await restarting;
    // Sent over HTTP as soon as the server is back, whether or not the pages reconnected yet.
    await server.postMessage(CONV, "Your parcel left the warehouse (sent via HTTP)");
    await customer.waitForSelector("#switchboard-widget[data-state=online]", { state: "attached" });
    await agent.waitForSelector("body[data-state=online]", { state: "attached" });
    // And from the agent page once it is back.
    const reply = agent.getByRole("textbox", { name: "Reply" });
    await reply.fill("It should arrive tomorrow.");
    await reply.press("Enter");

    for (const text of ["sent via HTTP", "arrive tomorrow"]) {
      await customer.locator("li.theirs", { hasText: text }).waitFor();
    }
    await customer.locator("li.mine[data-id]", { hasText: "Typed while you were away" }).waitFor();
    for (const text of ["sent via HTTP", "arrive tomorrow", "Typed while you were away"]) {
      await agent.locator("#messages li[data-id]", { hasText: text }).waitFor();
    }
    assert.equal(await customer.locator("li.pending").count(), 0);
    const seen = await widgetMessages(customer);
    assertInOrder(seen, "customer after restart");
    assert.equal(seen.length, 6);
    const stored = await server.history(CONV);
    assert.deepEqual(
      seen.map((m) => m.id),
      stored.map((m) => m.id),
    );
    assertInOrder(await agentMessages(agent), "agent after restart");
  });

  it("is accessible by keyboard and labelled", async () => {
    const log = customer.getByRole("log", { name: "Messages" });
    assert.equal(await log.getAttribute("aria-live"), "polite");
    assert.equal(await agent.getByRole("log", { name: "Messages" }).getAttribute("aria-live"), "polite");
    // Escape closes the panel and gives focus back to the launcher.
    await customer.getByRole("textbox", { name: "Message" }).press("Escape");
    await customer.getByRole("button", { name: /open chat/i }).waitFor();
    const launcher = customer.locator(".launcher");
    assert.equal(await launcher.getAttribute("aria-expanded"), "false");
    assert.equal(await customer.evaluate(() => document.querySelector("#switchboard-widget").shadowRoot.activeElement?.className), "launcher");
    // Enter on the focused launcher opens it again, focus in the text box.
    await customer.keyboard.press("Enter");
    await customer.getByRole("textbox", { name: "Message" }).waitFor();
    assert.equal(await launcher.getAttribute("aria-expanded"), "true");
    assert.equal(await customer.evaluate(() => document.querySelector("#switchboard-widget").shadowRoot.activeElement?.id), "sb-input");
    // Opening a conversation puts the agent in its reply box.
    assert.equal(await agent.evaluate(() => document.activeElement?.id), "reply");
  });

  it("writes screenshots of both pages at phone and desktop sizes", async (t) => {
    const dir = outputDir();
    const shots = [];
    const shoot = async (page, name, viewport) => {
      await page.setViewportSize(viewport);
      const path = join(dir, `${name}-${viewport.width}x${viewport.height}.png`);
      await page.screenshot({ path });
      shots.push(path);
    };
    await shoot(customer, "customer-widget", DESKTOP);
    await shoot(agent, "agent-inbox", DESKTOP);
    await shoot(customer, "customer-widget", PHONE);
    await shoot(agent, "agent-conversation", PHONE);
    await agent.getByRole("button", { name: /back to conversations/i }).click();
    await agent.waitForSelector("nav", { state: "visible" });
    await shoot(agent, "agent-list", PHONE);
    // Nothing wider than the phone: no horizontal scrolling.
    for (const page of [customer, agent]) {
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${page.url()} overflows by ${overflow}px at phone width`);
    }
    for (const s of shots) t.diagnostic(`screenshot: ${s}`);
  });

  it("logged no errors in either page (CSP, exceptions)", () => {
    assert.deepEqual(browser.problems, []);
  });
});
