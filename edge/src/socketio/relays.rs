//! Bot replies per WhatsApp number, subscribed while a socket of that number
//! is connected here.

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::json;
use socketioxide::SocketIo;
use switchboard_bus::events::{Event, encode};
use switchboard_bus::{Bus, Envelope, headers, subjects};
use switchboard_proto::model::Timestamp;
use switchboard_proto::pb::{self, command_result};

use super::fanout::{emit_to, phone_room, sockets_in};
use super::session::session_of;
use crate::relay::Relays;
use crate::wire::event;

/// Bot-reply subscriptions, one per phone number with sockets here.
pub fn phone_relays(bus: Arc<dyn Bus>, io: SocketIo) -> Relays {
    let relay_bus = bus.clone();
    Relays::new(bus, "phone", subjects::user_phone_bot, move |phone, events| {
        tokio::spawn(relay_bot_replies(events, relay_bus.clone(), io.clone(), phone))
    })
}

async fn relay_bot_replies(
    mut events: switchboard_bus::Subscription,
    bus: Arc<dyn Bus>,
    io: SocketIo,
    phone: String,
) {
    while let Some(envelope) = events.next().await {
        // A consumer checks that what it got is its own, whatever the subject said.
        let Ok(Event::BotReply(reply)) = Event::decode(&envelope) else {
            continue;
        };
        if reply.phone != phone {
            continue;
        }
        let delivered = deliver_bot_reply(&io, &phone, &reply);
        // Only a real delivery answers: silence tells the worker to keep it queued.
        if delivered > 0
            && let Some(to) = envelope.headers.get(headers::REPLY_TO)
        {
            let answer = pb::CommandResult {
                created: true,
                outcome: Some(command_result::Outcome::Delivered(delivered)),
            };
            if let Err(e) = bus.publish(Envelope::new(to, encode(&answer))).await {
                tracing::warn!(error = %e, "bot reply receipt not sent");
            }
        }
    }
}

/// Emits the bot-reply widget's `bot-response` to each socket of that phone
/// that has not had it yet; answers how many got it.
pub fn deliver_bot_reply(io: &SocketIo, phone: &str, reply: &pb::BotReply) -> u32 {
    let payload = json!({ "text": reply.text, "sender": "bot", "timestamp": Timestamp(reply.at_ms) });
    let mut delivered = 0;
    for socket in sockets_in(io, phone_room(phone)) {
        let fresh = session_of(&socket).is_some_and(|s| s.first_sight_of_bot_reply(&reply.id));
        if fresh && emit_to(&socket, event::BOT_RESPONSE, &payload) {
            delivered += 1;
        }
    }
    delivered
}
