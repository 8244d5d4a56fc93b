// The bot-reply widget's bridge straight onto the bus: a bot publishes its reply as a
// protobuf Command on `sb.cmd.chat.<partition>.bot_reply` in NATS JetStream (the real `nats` client
// from npm, the schema from proto/), and the widget on any edge gets `bot-response`.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { join as joinPath } from "node:path";
import { describe, it } from "node:test";
import { connect as natsConnect, headers as natsHeaders } from "nats";
import protobuf from "protobufjs";
import { io } from "socket.io-client";
import { useCluster } from "../lib/cluster.mjs";
import { REPO_ROOT } from "../lib/server.mjs";
import { once, track, whenConnected } from "../lib/sio.mjs";

const ctx = useCluster({ edges: 2, workers: 2 });

async function bot(cluster) {
  const root = await protobuf.load(joinPath(REPO_ROOT, "proto", "switchboard.proto"));
  const Command = root.lookupType("switchboard.v1.Command");
  const CommandResult = root.lookupType("switchboard.v1.CommandResult");
  const nc = await natsConnect({ servers: cluster.natsUrl, name: "test-bot" });
  const js = nc.jetstream();
  return {
    /** Publishes a reply durably; resolves with the worker's answer (`delivered` count). */
    async reply(phone, text) {
      const inbox = nc.subscribe(`bot-answers.${randomUUID()}`, { max: 1 });
      const h = natsHeaders();
      h.set("Sb-Reply-To", inbox.getSubject());
      const id = randomUUID();
      const body = Command.encode(Command.create({ botReply: { id, phone, text } })).finish();
      await js.publish(cluster.commandSubject("chat", phone, "bot_reply"), body, { msgID: id, headers: h });
      for await (const answer of inbox) return CommandResult.toObject(CommandResult.decode(answer.data), { defaults: true });
      throw new Error("no answer from the worker");
    },
    close: () => nc.close(),
  };
}

/** The bot-reply widget, as its code connects, with the token in the URL. */
function widget(cluster, edge, phone) {
  const token = cluster.token({ sub: `wa-${phone}`, role: "customer", phone });
  return track(io(`${edge.url}/?token=${token}`, { query: { userPhone: phone }, transports: ["websocket"] }));
}

describe("a bot publishing on the bus", () => {
  it("reaches the widget of that phone on another edge, and the bot hears it was delivered", async () => {
    const { cluster } = ctx;
    const phone = `52155${Math.floor(Math.random() * 1e6)}`;
    const w = widget(cluster, cluster.edges[1], phone);
    await whenConnected(w);
    const b = await bot(cluster);
    try {
      const answer = await b.reply(phone, "Hola desde el bus");
      assert.equal(answer.delivered, 1, JSON.stringify(answer));
      const got = await once(w, "bot-response", { timeout: 10_000 });
      assert.equal(got.text, "Hola desde el bus");
      assert.equal(got.sender, "bot");
    } finally {
      await b.close();
    }
  });

  it("is kept for a user who is not connected and delivered on their next connect, to any edge", async () => {
    const { cluster } = ctx;
    const phone = `52155${Math.floor(Math.random() * 1e6)}`;
    const b = await bot(cluster);
    try {
      const answer = await b.reply(phone, "te esperaba");
      assert.equal(answer.delivered, 0, "nobody was connected: queued");
    } finally {
      await b.close();
    }
    const w = widget(cluster, cluster.edges[0], phone);
    const got = await once(w, "bot-response", { timeout: 10_000 });
    assert.equal(got.text, "te esperaba");
  });
});
