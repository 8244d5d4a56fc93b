// Meta's webhook payloads for the WhatsApp tests: fixtures (copied from Meta's
// documented shapes), re-addressed to a test's own number, and signed.

import { createHmac, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "whatsapp");
export const PHONE_NUMBER_ID = "106540352242922";
export const APP_SECRET = "test-app-secret";
export const VERIFY_TOKEN = "test-verify-token";

/** A fixture, with the sender's number and message ids replaced; `wamid` fills statuses. */
export function fixture(name, { waId, wamid, name: profile } = {}) {
  const body = JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), "utf8"));
  const value = body.entry[0].changes[0].value;
  for (const c of value.contacts ?? []) {
    if (waId) c.wa_id = waId;
    if (profile) c.profile.name = profile;
  }
  for (const m of value.messages ?? []) {
    if (waId) m.from = waId;
    m.id = `wamid.${randomUUID()}`;
  }
  for (const s of value.statuses ?? []) {
    if (wamid) s.id = wamid;
    if (waId) s.recipient_id = waId;
  }
  return body;
}

export function sign(raw, secret = APP_SECRET) {
  return `sha256=${createHmac("sha256", secret).update(raw).digest("hex")}`;
}

/** POSTs a webhook body (an object or the raw string), signed unless `signature` says otherwise. */
export async function deliver(url, body, { signature } = {}) {
  const raw = typeof body === "string" ? body : JSON.stringify(body);
  const headers = { "content-type": "application/json" };
  const sig = signature === undefined ? sign(raw) : signature;
  if (sig !== null) headers["x-hub-signature-256"] = sig;
  return fetch(`${url}/webhooks/whatsapp`, { method: "POST", headers, body: raw });
}

export function conversationId(waId) {
  return `wa:${PHONE_NUMBER_ID}:${waId}`;
}

export function randomWaId() {
  return `1555${String(Math.floor(Math.random() * 1e7)).padStart(7, "0")}`;
}

export function waEnv(graphBase) {
  return {
    SWITCHBOARD_WA_VERIFY_TOKEN: VERIFY_TOKEN,
    SWITCHBOARD_WA_APP_SECRET: APP_SECRET,
    SWITCHBOARD_WA_ACCESS_TOKEN: "test-access-token",
    SWITCHBOARD_WA_PHONE_NUMBER_ID: PHONE_NUMBER_ID,
    SWITCHBOARD_WA_GRAPH_BASE: graphBase,
  };
}
