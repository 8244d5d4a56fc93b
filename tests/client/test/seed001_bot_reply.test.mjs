// The bot-reply widget: a WhatsApp bot (Botito) answers users of a chat widget
// (Konecte's AssistantChatWidget). The widget connects exactly as its own code does,
// `io(SOCKET_SERVER_URL, { query: { userPhone } })`, with only its URL changed to carry
// the token (socket.io-client then uses the URL's query, so the phone rides in the
// token's `phone` claim). Botito POSTs /api/bot-reply and every socket of that phone
// gets `bot-response`; with none connected the reply is queued for the next connect.

import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { describe, it } from "node:test";
import { io } from "socket.io-client";
import { useServer } from "../lib/setup.mjs";
import { assertRfc3339, expectNone, once, track, whenConnected } from "../lib/sio.mjs";

const ctx = useServer();

let phoneSeq = 0;
function newPhone() {
  phoneSeq += 1;
  return `5511${randomInt(1000, 9999)}${String(phoneSeq).padStart(4, "0")}`;
}

/** The widget's own AssistantChatWidget connection, URL changed to carry a customer token. */
function widget(userPhone, sub = `wa-${userPhone}`) {
  const token = ctx.server.customerToken(sub, { phone: userPhone });
  const SOCKET_SERVER_URL = `${ctx.server.url}/?token=${encodeURIComponent(token)}`;
  const socket = io(SOCKET_SERVER_URL, {
    query: { userPhone },
  });
  return track(socket); // records events from now on, so nothing sent right after connect is missed
}

/** Botito's sendMessageToKonecte: axios.post(webhookUrl, payload) — JSON, no auth header. */
function botito(payload, { webhookUrl } = {}) {
  const url = webhookUrl ?? `/api/bot-reply?token=${encodeURIComponent(ctx.server.botToken("botito"))}`;
  return ctx.server.http("POST", url, { json: payload });
}

/** The answer carries these fields (extra ones, like `message`, are fine). */
function assertAnswer(body, expected) {
  assert.ok(body && typeof body === "object", `answer is not JSON: ${JSON.stringify(body)}`);
  for (const [k, v] of Object.entries(expected)) assert.deepEqual(body[k], v, `answer.${k} in ${JSON.stringify(body)}`);
}

describe("the bot-reply widget: POST /api/bot-reply", () => {
  it("delivers bot-response {text, sender:'bot', timestamp} to the connected widget: 200 delivered", async () => {
    const phone = newPhone();
    const w = widget(phone);
    await whenConnected(w);
    const res = await ctx.server.http("POST", "/api/bot-reply", {
      token: ctx.server.botToken("botito"),
      json: { targetUserWhatsAppNumber: phone, messageText: "¡Hola! Soy Botito." },
    });
    assert.equal(res.status, 200, res.text);
    assertAnswer(res.body, { success: true, status: "delivered", delivered: 1 });
    const msg = await once(w, "bot-response");
    assert.equal(msg.text, "¡Hola! Soy Botito.");
    assert.equal(msg.sender, "bot");
    assertRfc3339(msg.timestamp, "bot-response.timestamp");
    // What the widget does with it: new Date(message.timestamp) must be valid and recent.
    assert.ok(Math.abs(Date.now() - new Date(msg.timestamp).getTime()) < 60_000);
  });

  it("accepts the bot token in the webhook URL's query, as axios.post(webhookUrl, payload) sends no header", async () => {
    const phone = newPhone();
    const w = widget(phone);
    await whenConnected(w);
    const res = await botito({ targetUserWhatsAppNumber: phone, messageText: "via query token" });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.status, "delivered");
    assert.equal((await once(w, "bot-response")).text, "via query token");
  });

  it("reaches every socket of that phone and no other", async () => {
    const phone = newPhone();
    const other = newPhone();
    const w1 = widget(phone);
    const w2 = widget(phone);
    const stranger = widget(other);
    await Promise.all([whenConnected(w1), whenConnected(w2), whenConnected(stranger)]);
    const res = await botito({ targetUserWhatsAppNumber: phone, messageText: "to both tabs" });
    assert.equal(res.status, 200, res.text);
    assertAnswer(res.body, { success: true, status: "delivered", delivered: 2 });
    assert.equal((await once(w1, "bot-response")).text, "to both tabs");
    assert.equal((await once(w2, "bot-response")).text, "to both tabs");
    await expectNone(stranger, "bot-response", { what: "another phone's widget" });
  });

  it("refuses a call without a token (401 token_required) and a customer's token (403 forbidden)", async () => {
    const noAuth = await ctx.server.http("POST", "/api/bot-reply", {
      json: { targetUserWhatsAppNumber: newPhone(), messageText: "x" },
    });
    assert.equal(noAuth.status, 401, noAuth.text);
    assert.equal(noAuth.body?.error?.code, "token_required");
    const customer = await ctx.server.http("POST", "/api/bot-reply", {
      token: ctx.server.customerToken("cust-br1"),
      json: { targetUserWhatsAppNumber: newPhone(), messageText: "x" },
    });
    assert.equal(customer.status, 403, customer.text);
    assert.equal(customer.body?.error?.code, "forbidden");
  });

  it("missing targetUserWhatsAppNumber or messageText is 400 bad_request", async () => {
    for (const payload of [{ targetUserWhatsAppNumber: newPhone() }, { messageText: "hola" }, {}]) {
      const res = await botito(payload);
      assert.equal(res.status, 400, `${JSON.stringify(payload)}: ${res.status} ${res.text}`);
      assert.equal(res.body?.error?.code, "bad_request", res.text);
      assert.equal(typeof res.body.error.message, "string");
    }
  });

  it("with no widget connected answers 202 queued and delivers, in order, right after the next connect, once", async () => {
    const phone = newPhone();
    let res = await botito({ targetUserWhatsAppNumber: phone, messageText: "queued one" });
    assert.equal(res.status, 202, res.text);
    assertAnswer(res.body, { success: true, status: "queued" });
    res = await botito({ targetUserWhatsAppNumber: phone, messageText: "queued two" });
    assert.equal(res.status, 202, res.text);

    const w = widget(phone);
    await whenConnected(w);
    assert.equal((await once(w, "bot-response")).text, "queued one");
    const second = await once(w, "bot-response");
    assert.equal(second.text, "queued two");
    assert.equal(second.sender, "bot");
    w.disconnect();

    const again = widget(phone);
    await whenConnected(again);
    await expectNone(again, "bot-response", { what: "an already delivered queued reply" });
  });

  it("a queued reply survives a server restart", async () => {
    const phone = newPhone();
    const res = await botito({ targetUserWhatsAppNumber: phone, messageText: "kept across restart" });
    assert.equal(res.status, 202, res.text);
    await ctx.server.restart();
    const w = widget(phone);
    await whenConnected(w);
    const msg = await once(w, "bot-response");
    assert.equal(msg.text, "kept across restart");
    assert.equal(msg.sender, "bot");
  });
});
