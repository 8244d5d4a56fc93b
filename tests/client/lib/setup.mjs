// Per-file server lifecycle for node:test files.
//
//   const ctx = useServer({ SWITCHBOARD_TYPING_TTL_MS: "300" });
//   it("...", async () => { ctx.server.url ... });
//
// The server starts once before the file's tests and stops after them; sockets
// opened through lib/sio.mjs are closed after every test. Set
// SWITCHBOARD_TEST_LOGS=1 to print the server's output when the file ends.

import { after, afterEach, before } from "node:test";
import { startServer } from "./server.mjs";
import { closeAll } from "./sio.mjs";

export function useServer(env = {}) {
  const ctx = { server: null };
  before(async () => {
    ctx.server = await startServer({ env });
  });
  afterEach(() => {
    closeAll();
  });
  after(async () => {
    closeAll();
    if (!ctx.server) return;
    if (process.env.SWITCHBOARD_TEST_LOGS) {
      process.stderr.write(`--- server output (${ctx.server.url}) ---\n${ctx.server.logs()}\n`);
    }
    await ctx.server.stop();
  });
  return ctx;
}
