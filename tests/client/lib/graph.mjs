// A stand-in for Meta's Graph API `/messages` endpoint, for the WhatsApp tests.
//
//   const graph = await startGraph();          // graph.base -> "http://127.0.0.1:PORT/v21.0"
//   graph.script(to, [{ status: 429, code: 130429, retryAfter: 0 }, { status: 500 }]);
//   await graph.waitFor((reqs) => reqs.length >= 3);
//   graph.requests  -> [{ path, auth, body }]
//   await graph.stop()
//
// Every request is recorded. Unless a response was scripted for the
// recipient, it answers with Meta's success body.

import { randomBytes } from "node:crypto";
import { createServer } from "node:http";

/** Meta's error body, as documented for Cloud API errors. */
export function graphError(code, message = `error ${code}`) {
  return {
    error: {
      message,
      type: "OAuthException",
      code,
      error_data: { messaging_product: "whatsapp", details: message },
      error_subcode: 2494010,
      fbtrace_id: `A${randomBytes(8).toString("hex")}`,
    },
  };
}

export async function startGraph() {
  const requests = [];
  const scripts = new Map();
  const waiters = [];
  const wake = () => {
    for (const w of [...waiters]) {
      if (w.test(requests)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(requests);
      }
    }
  };
  const server = createServer((req, res) => {
    let raw = "";
    req.on("data", (c) => (raw += c));
    req.on("end", () => {
      let body = null;
      try {
        body = JSON.parse(raw);
      } catch {}
      const entry = { method: req.method, path: req.url, auth: req.headers.authorization, body };
      const queue = scripts.get(body?.to);
      const step = queue?.shift();
      const reply = (status, json, headers = {}) => {
        entry.status = status;
        requests.push(entry);
        res.writeHead(status, { "content-type": "application/json", ...headers });
        res.end(JSON.stringify(json));
        wake();
      };
      if (step) {
        const headers = step.retryAfter !== undefined ? { "retry-after": String(step.retryAfter) } : {};
        reply(step.status, step.code ? graphError(step.code, step.message) : { error: { message: "boom" } }, headers);
      } else {
        entry.wamid = `wamid.${randomBytes(12).toString("hex")}`;
        reply(200, {
          messaging_product: "whatsapp",
          contacts: [{ input: body?.to, wa_id: body?.to }],
          messages: [{ id: entry.wamid }],
        });
      }
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return {
    base: `http://127.0.0.1:${port}/v21.0`,
    requests,
    /** Responses for sends to `to`, used in order before the default success. */
    script(to, steps) {
      scripts.set(to, [...steps]);
    },
    /** Resolves when `test(requests)` holds; rejects after `timeout` ms. */
    waitFor(test, { timeout = 10_000, what = "graph requests" } = {}) {
      if (test(requests)) return Promise.resolve(requests);
      return new Promise((resolve, reject) => {
        const w = { test, resolve };
        waiters.push(w);
        setTimeout(() => {
          const i = waiters.indexOf(w);
          if (i >= 0) {
            waiters.splice(i, 1);
            reject(new Error(`timed out waiting for ${what}; ${requests.length} requests so far`));
          }
        }, timeout);
      });
    },
    stop() {
      return new Promise((r) => server.close(r));
    },
  };
}
