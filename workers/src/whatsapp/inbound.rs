//! Webhook bodies from `sb.wa.in` into the store.
//!
//! Each inbound message lands in the conversation of its sender's `wa_id`
//! (`wa:<phone_number_id>:<wa_id>`, created when new), with the WhatsApp
//! message id as its `client_msg_id`: a webhook Meta delivers twice stores
//! nothing twice. Statuses only move forward. Parts that cannot be read are
//! logged and skipped: Meta's payload does not get better by retrying it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Value, json};
use switchboard_bus::events::{ConversationChange, Event};
use switchboard_bus::{Bus, Delivery, subjects};
use switchboard_proto::model::{
    Channel, Customer, DeliveryStatus, Role, Sender, Source, StatusError, Timestamp,
};
use switchboard_store::{Fence, NewConversation, NewMessage, Store, StoreError};
use uuid::Uuid;

use super::{DURABLE_IN, announce};
use crate::runner::{self, Handler, Intake, Outcome};

const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

pub struct Inbound {
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
}

/// One inbound message, read out of the envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub phone_number_id: String,
    pub wa_id: String,
    pub name: String,
    pub id: String,
    pub at: Timestamp,
    pub text: String,
    pub content: Option<Value>,
}

/// One status, read out of the envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingStatus {
    pub wamid: String,
    pub status: DeliveryStatus,
    pub at: Timestamp,
    pub error: Option<StatusError>,
}

#[async_trait]
impl Handler for Inbound {
    async fn handle(&self, batch: &[Delivery], _fence: &Fence) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for delivery in batch {
            outcomes.push(self.handle_one(delivery).await);
        }
        outcomes
    }

    /// Never given: Meta waits for no answer, a webhook is retried until stored.
    fn unavailable(&self) -> Bytes {
        Bytes::new()
    }
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub messages: Vec<Incoming>,
    pub statuses: Vec<IncomingStatus>,
}

enum Failure {
    Store(StoreError),
    Bus(switchboard_bus::BusError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Store(e) => e.fmt(f),
            Failure::Bus(e) => e.fmt(f),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<switchboard_bus::BusError> for Failure {
    fn from(e: switchboard_bus::BusError) -> Self {
        Failure::Bus(e)
    }
}

impl Inbound {
    pub fn new(bus: Arc<dyn Bus>, store: Arc<dyn Store>) -> Self {
        Self { bus, store }
    }

    pub async fn run(self, stop: impl Future<Output = ()>) -> switchboard_bus::Result<()> {
        let intake = Intake { durable: DURABLE_IN, filter: subjects::WA_IN, batch: 1, concurrency: 1 };
        runner::run(self.bus.as_ref(), intake, &self, stop).await
    }

    async fn handle_one(&self, delivery: &Delivery) -> Outcome {
        let parsed = match serde_json::from_slice::<Value>(&delivery.envelope.payload) {
            Ok(body) => parse(&body),
            Err(e) => {
                tracing::warn!(error = %e, "whatsapp webhook body is not JSON; skipped");
                Parsed::default()
            }
        };
        let outcome = async {
            self.store_messages(&parsed.messages).await?;
            self.store_statuses(&parsed.statuses).await
        }
        .await;
        match outcome {
            Ok(()) => Outcome::Done(None),
            Err(e) => {
                Outcome::Retry { error: Some(e.to_string()), issued: Timestamp::now(), pause: RETRY_PAUSE }
            }
        }
    }

    async fn store_messages(&self, incoming: &[Incoming]) -> Result<(), Failure> {
        if incoming.is_empty() {
            return Ok(());
        }
        let mut batch = Vec::with_capacity(incoming.len());
        for m in incoming {
            let conversation_id = format!("wa:{}:{}", m.phone_number_id, m.wa_id);
            let customer = Customer {
                id: format!("wa:{}", m.wa_id),
                name: m.name.clone(),
                phone: Some(m.wa_id.clone()),
                email: None,
            };
            let new = NewConversation {
                id: conversation_id.clone(),
                channel: Channel::Whatsapp,
                customer: customer.clone(),
                at: m.at,
            };
            self.store.create_conversation(new).await?;
            batch.push(NewMessage {
                id: Uuid::now_v7(),
                conversation_id,
                sender: Sender { id: customer.id, role: Role::Customer, name: m.name.clone() },
                text: m.text.clone(),
                client_msg_id: Some(m.id.clone()),
                source: Source::Whatsapp,
                created_at: m.at,
                content: m.content.clone(),
                create_for: None,
                private: false,
            });
        }
        let outcomes = self.store.append_messages(&batch, &Fence::none()).await?;
        let mut updated = HashMap::new();
        for appended in outcomes {
            let appended = match appended {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "whatsapp message not stored; skipped");
                    continue;
                }
            };
            // Announced with its first message, not at its creation: an agent
            // who joins on `conversation:new` finds that message in history,
            // and a redelivery after a failed append still announces it.
            if appended.created && appended.message.offset == 1 {
                announce(self.bus.as_ref(), Event::ConversationNew(appended.conversation.clone())).await?;
            }
            // Again on a redelivery too: edges drop what they already have.
            announce(self.bus.as_ref(), Event::MessageNew(appended.message)).await?;
            if appended.reopened {
                let change = ConversationChange::reopened(appended.conversation);
                updated.remove(&change.conversation.id);
                announce(self.bus.as_ref(), Event::ConversationUpdated(change)).await?;
            } else if appended.created {
                updated.insert(appended.conversation.id.clone(), appended.conversation);
            }
        }
        for conversation in updated.into_values() {
            announce(
                self.bus.as_ref(),
                Event::ConversationUpdated(ConversationChange::activity(conversation)),
            )
            .await?;
        }
        Ok(())
    }

    async fn store_statuses(&self, statuses: &[IncomingStatus]) -> Result<(), Failure> {
        for s in statuses {
            let Some(message_id) = self.store.message_by_wamid(&s.wamid).await? else {
                tracing::info!(wamid = %s.wamid, "status for a message we did not send; skipped");
                continue;
            };
            let Some(change) = self.store.set_status(message_id, s.status, s.at).await? else { continue };
            if change.changed {
                let mut update = change.update;
                update.error = s.error.clone();
                if let Some(error) = &s.error {
                    self.store.record_failure(message_id, &error.title, true, Timestamp::now()).await?;
                }
                announce(self.bus.as_ref(), Event::MessageStatus(update)).await?;
            }
        }
        Ok(())
    }
}

/// Reads Meta's envelope; what cannot be read is logged and left out.
pub fn parse(body: &Value) -> Parsed {
    let mut parsed = Parsed::default();
    if body["object"] != "whatsapp_business_account" {
        tracing::warn!(object = %body["object"], "not a whatsapp_business_account webhook; skipped");
        return parsed;
    }
    for change in body["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["changes"].as_array().into_iter().flatten())
    {
        if change["field"] != "messages" {
            tracing::info!(field = %change["field"], "webhook field ignored");
            continue;
        }
        let value = &change["value"];
        let phone_number_id = value["metadata"]["phone_number_id"].as_str().unwrap_or("unknown");
        let names: HashMap<&str, &str> = value["contacts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["wa_id"].as_str()?, c["profile"]["name"].as_str().unwrap_or(""))))
            .collect();
        for m in value["messages"].as_array().into_iter().flatten() {
            match incoming(phone_number_id, &names, m) {
                Some(i) => parsed.messages.push(i),
                None => tracing::warn!(message = %m, "whatsapp message not understood; skipped"),
            }
        }
        for s in value["statuses"].as_array().into_iter().flatten() {
            match status(s) {
                Some(s) => parsed.statuses.push(s),
                None => tracing::warn!(status = %s, "whatsapp status not understood; skipped"),
            }
        }
        for e in value["errors"].as_array().into_iter().flatten() {
            tracing::warn!(error = %e, "whatsapp reported an error");
        }
    }
    parsed
}

fn timestamp(v: &Value) -> Timestamp {
    v.as_str()
        .and_then(|t| t.parse::<i64>().ok())
        .or_else(|| v.as_i64())
        .map_or_else(Timestamp::now, |s| Timestamp(s.saturating_mul(1000)))
}

fn incoming(phone_number_id: &str, names: &HashMap<&str, &str>, m: &Value) -> Option<Incoming> {
    let wa_id = m["from"].as_str()?.to_owned();
    let id = m["id"].as_str()?.to_owned();
    let kind = m["type"].as_str()?;
    let (text, content) = match kind {
        "text" => (m["text"]["body"].as_str()?.to_owned(), None),
        "image" | "video" | "audio" | "document" | "sticker" => {
            let media = &m[kind];
            let caption = media["caption"].as_str();
            let content = json!({
                "type": kind,
                "media_id": media["id"].as_str()?,
                "mime_type": media["mime_type"],
                "caption": caption,
            });
            let text =
                caption.or(media["filename"].as_str()).map_or_else(|| format!("[{kind}]"), str::to_owned);
            (text, Some(content))
        }
        "location" => {
            let l = &m["location"];
            let content = json!({
                "type": "location",
                "latitude": l["latitude"].as_f64()?,
                "longitude": l["longitude"].as_f64()?,
                "name": l["name"],
                "address": l["address"],
            });
            let text = l["name"].as_str().map_or_else(|| "[location]".to_owned(), str::to_owned);
            (text, Some(content))
        }
        "interactive" => {
            let i = &m["interactive"];
            let reply = match i["type"].as_str()? {
                "button_reply" => &i["button_reply"],
                "list_reply" => &i["list_reply"],
                _ => return None,
            };
            let title = reply["title"].as_str()?.to_owned();
            let content = json!({ "type": "interactive", "reply_id": reply["id"].as_str()?, "title": title });
            (title, Some(content))
        }
        "button" => {
            let title = m["button"]["text"].as_str()?.to_owned();
            let content = json!({ "type": "button", "reply_id": m["button"]["payload"], "title": title });
            (title, Some(content))
        }
        "contacts" => {
            let contacts = m["contacts"].as_array()?.clone();
            let names: Vec<&str> =
                contacts.iter().filter_map(|c| c["name"]["formatted_name"].as_str()).collect();
            let text = if names.is_empty() { "[contacts]".to_owned() } else { names.join(", ") };
            (text, Some(json!({ "type": "contacts", "contacts": contacts })))
        }
        _ => return None,
    };
    Some(Incoming {
        phone_number_id: phone_number_id.to_owned(),
        name: names.get(wa_id.as_str()).copied().filter(|n| !n.is_empty()).unwrap_or(&wa_id).to_owned(),
        wa_id,
        id,
        at: timestamp(&m["timestamp"]),
        text,
        content,
    })
}

fn status(s: &Value) -> Option<IncomingStatus> {
    let status = DeliveryStatus::parse(s["status"].as_str()?)?;
    let error = s["errors"][0].as_object().map(|e| StatusError {
        code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
        title: e.get("title").or(e.get("message")).and_then(Value::as_str).unwrap_or("").to_owned(),
    });
    Some(IncomingStatus {
        wamid: s["id"].as_str()?.to_owned(),
        status,
        at: timestamp(&s["timestamp"]),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_text_and_a_status() {
        let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "123"},
            "contacts": [{"profile": {"name": "Kerry"}, "wa_id": "16315551181"}],
            "messages": [{"from": "16315551181", "id": "ABGG", "timestamp": "1603059201", "type": "text", "text": {"body": "hi"}}],
            "statuses": [{"id": "wamid.X", "status": "failed", "timestamp": "1603059202", "recipient_id": "16315551181",
                "errors": [{"code": 131047, "title": "Re-engagement message"}]}]
        }}]}]});
        let parsed = parse(&body);
        assert_eq!(parsed.messages[0].name, "Kerry");
        assert_eq!(parsed.messages[0].text, "hi");
        assert_eq!(parsed.messages[0].at, Timestamp(1_603_059_201_000));
        assert_eq!(parsed.statuses[0].error.as_ref().unwrap().code, 131047);
    }
}
