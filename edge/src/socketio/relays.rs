//! Bot replies per WhatsApp number, subscribed while a socket of that number
//! is connected here.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::json;
use socketioxide::SocketIo;
use switchboard_bus::events::{Event, encode};
use switchboard_bus::{Bus, Envelope, headers, subjects};
use switchboard_proto::model::Timestamp;
use switchboard_proto::pb::{self, command_result};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::fanout::{emit_to, phone_room, sockets_in};
use super::session::session_of;

/// Bot-reply subscriptions, counted per phone number.
pub struct PhoneRelays {
    bus: Arc<dyn Bus>,
    io: SocketIo,
    relays: Mutex<HashMap<String, (JoinHandle<()>, usize)>>,
}

impl PhoneRelays {
    pub fn new(bus: Arc<dyn Bus>, io: SocketIo) -> Self {
        Self { bus, io, relays: Mutex::default() }
    }

    /// Subscribed when this returns, so a reply published afterwards arrives.
    pub async fn acquire(&self, phone: &str) -> switchboard_bus::Result<()> {
        let mut relays = self.relays.lock().await;
        if let Some((_, count)) = relays.get_mut(phone) {
            *count += 1;
            return Ok(());
        }
        let events = self.bus.subscribe(&subjects::user_phone_bot(phone)).await?;
        let task =
            tokio::spawn(relay_bot_replies(events, self.bus.clone(), self.io.clone(), phone.to_owned()));
        relays.insert(phone.to_owned(), (task, 1));
        metrics::gauge!("switchboard_subscriptions", "kind" => "phone").increment(1.0);
        Ok(())
    }

    pub async fn release(&self, phone: &str) {
        let mut relays = self.relays.lock().await;
        if let Some((task, count)) = relays.get_mut(phone) {
            *count -= 1;
            if *count == 0 {
                task.abort();
                relays.remove(phone);
                metrics::gauge!("switchboard_subscriptions", "kind" => "phone").decrement(1.0);
            }
        }
    }
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

/// Emits seed 001's `bot-response` to each socket of that phone that has not
/// had it yet; answers how many got it.
pub fn deliver_bot_reply(io: &SocketIo, phone: &str, reply: &pb::BotReply) -> u32 {
    let payload = json!({ "text": reply.text, "sender": "bot", "timestamp": Timestamp(reply.at_ms) });
    let mut delivered = 0;
    for socket in sockets_in(io, phone_room(phone)) {
        let fresh = session_of(&socket).is_some_and(|s| s.first_sight_of_bot_reply(&reply.id));
        if fresh && emit_to(&socket, "bot-response", &payload) {
            delivered += 1;
        }
    }
    delivered
}
