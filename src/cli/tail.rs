//! `switchboard tail <subject>`: what flows on the bus, one JSON line each,
//! bodies decoded from their protobuf envelopes.

use futures_util::StreamExt;
use prost::Message as _;
use serde_json::{Value, json};
use switchboard_bus::{Envelope, headers, subjects};
use switchboard_proto::pb;

use super::settings::Settings;

#[derive(clap::Args)]
pub struct TailArgs {
    /// Subject to watch; NATS wildcards allowed (`sb.>`, `sb.conv.*.msg`).
    #[arg(default_value = "sb.>")]
    subject: String,
    #[command(flatten)]
    settings: Settings,
}

pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let settings = args.settings.resolve()?;
    let bus = settings.observer_bus("tail").await?;
    let mut messages = bus.subscribe(&args.subject).await?;
    while let Some(envelope) = messages.next().await {
        println!("{}", line(&envelope));
    }
    Ok(())
}

fn line(envelope: &Envelope) -> Value {
    let headers: serde_json::Map<String, Value> =
        envelope.headers.iter().map(|(k, v)| (k.to_owned(), Value::from(v))).collect();
    json!({ "subject": envelope.subject, "headers": headers, "body": body(envelope) })
}

/// The body as JSON: by its event type, else by subject, else as text.
fn body(envelope: &Envelope) -> Value {
    let bytes = &envelope.payload[..];
    let decoded = match envelope.headers.get(headers::EVENT) {
        Some("message.new") => as_json(pb::Message::decode(bytes)),
        Some("message.status") => as_json(pb::MessageStatus::decode(bytes)),
        Some("typing") => as_json(pb::Typing::decode(bytes)),
        Some("presence") => as_json(pb::Presence::decode(bytes)),
        Some("conversation.new" | "conversation.updated") => as_json(pb::Conversation::decode(bytes)),
        Some("bot.reply") => as_json(pb::BotReply::decode(bytes)),
        Some("sync.pending") => as_json(pb::SyncChange::decode(bytes)),
        _ if envelope.subject.starts_with("sb.cmd.sync.") => match subjects::operation(&envelope.subject) {
            subjects::op::SYNC_CONFIRM => as_json(pb::SyncConfirm::decode(bytes)),
            _ => as_json(pb::SyncChange::decode(bytes)),
        },
        _ if envelope.subject.starts_with("sb.cmd.") => as_json(pb::Command::decode(bytes)),
        _ if envelope.subject.starts_with("sb.reply.") => as_json(pb::CommandResult::decode(bytes)),
        _ => None,
    };
    decoded.unwrap_or_else(|| Value::from(String::from_utf8_lossy(bytes).into_owned()))
}

fn as_json<T: serde::Serialize>(decoded: Result<T, prost::DecodeError>) -> Option<Value> {
    decoded.ok().and_then(|m| serde_json::to_value(m).ok())
}
