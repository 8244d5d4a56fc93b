//! Frames on the wire: JSON text, or protobuf binary (`proto/native.proto`)
//! for clients that asked for the `switchboard.v1.proto` subprotocol. Both
//! carry the same operations and events; this is the only place that differs.

use axum::extract::ws::Message as WsMessage;
use prost::Message as _;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use switchboard_proto::model::{self, ErrorBody};
use switchboard_proto::pb::{self, client_frame, server_frame};

use super::rooms::{Ack, Event, Frame};

/// The subprotocol a client names to speak protobuf.
pub const PROTOBUF: &str = "switchboard.v1.proto";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Json,
    Protobuf,
}

/// One client operation: its type, the ref to answer with, and its payload
/// in the shape the chat operations take.
#[derive(Debug, PartialEq)]
pub struct Operation {
    pub kind: String,
    pub reference: Option<Value>,
    pub data: Value,
}

impl Codec {
    /// An event is encoded by the first connection that sends it; the others
    /// share those bytes.
    pub fn encode(self, frame: &Frame) -> WsMessage {
        match frame {
            Frame::Event(event) => {
                event.encoded[self as usize].get_or_init(|| self.encode_event(event)).clone()
            }
            Frame::Ack(ack) => match self {
                Codec::Json => WsMessage::Text(json_ack(ack).to_string().into()),
                Codec::Protobuf => {
                    WsMessage::Binary(proto_frame(Some(server_frame::Frame::Ack(proto_ack(ack)))).into())
                }
            },
        }
    }

    fn encode_event(self, event: &Event) -> WsMessage {
        match self {
            Codec::Json => {
                WsMessage::Text(json!({ "type": event.name, "data": event.data }).to_string().into())
            }
            Codec::Protobuf => WsMessage::Binary(proto_frame(proto_event(&event.name, &event.data)).into()),
        }
    }

    /// A client frame; `Err` says what is wrong with it.
    pub fn decode(self, message: &WsMessage) -> Option<Result<Operation, String>> {
        match (self, message) {
            (Codec::Json, WsMessage::Text(text)) => Some(json_operation(text.as_str())),
            (Codec::Protobuf, WsMessage::Binary(bytes)) => Some(proto_operation(bytes)),
            (Codec::Json, WsMessage::Binary(_)) => {
                Some(Err("binary frames need the switchboard.v1.proto subprotocol".into()))
            }
            (Codec::Protobuf, WsMessage::Text(_)) => {
                Some(Err("this connection speaks protobuf: send binary ClientFrames".into()))
            }
            _ => None,
        }
    }
}

fn json_ack(Ack { reference, body }: &Ack) -> Value {
    let mut ack = json!({ "type": "ack", "ref": reference });
    if let (Some(ack), Value::Object(body)) = (ack.as_object_mut(), body) {
        ack.extend(body.clone());
    }
    ack
}

fn json_operation(text: &str) -> Result<Operation, String> {
    let mut frame: Map<String, Value> =
        serde_json::from_str(text).map_err(|_| "a frame is a JSON object with a type".to_owned())?;
    let reference = frame.remove("ref");
    let kind = frame.remove("type").and_then(|t| t.as_str().map(str::to_owned)).unwrap_or_default();
    Ok(Operation { kind, reference, data: Value::Object(frame) })
}

fn proto_operation(bytes: &[u8]) -> Result<Operation, String> {
    let frame = pb::ClientFrame::decode(bytes).map_err(|e| format!("undecodable ClientFrame: {e}"))?;
    let reference = (!frame.r#ref.is_empty()).then(|| Value::from(frame.r#ref));
    let (kind, data) = match frame.op.ok_or("a ClientFrame needs an operation")? {
        client_frame::Op::JoinConversation(j) => (
            "join_conversation",
            json!({ "conversation_id": j.conversation_id, "since_offset": j.since_offset }),
        ),
        client_frame::Op::LeaveConversation(c) => {
            ("leave_conversation", json!({ "conversation_id": c.conversation_id }))
        }
        client_frame::Op::SendMessage(s) => (
            "send_message",
            json!({
                "conversation_id": s.conversation_id,
                "text": s.text,
                "client_msg_id": s.client_msg_id,
                "private": s.private,
            }),
        ),
        client_frame::Op::TypingStart(c) => ("typing_start", json!({ "conversation_id": c.conversation_id })),
        client_frame::Op::TypingStop(c) => ("typing_stop", json!({ "conversation_id": c.conversation_id })),
        client_frame::Op::MarkRead(m) => {
            ("mark_read", json!({ "conversation_id": m.conversation_id, "message_id": m.message_id }))
        }
        client_frame::Op::Ping(_) => ("ping", json!({})),
        client_frame::Op::AssignConversation(a) => {
            let mut data = json!({ "conversation_id": a.conversation_id });
            if a.transfer {
                data["assignee"] = json!(a.assignee.map(|a| json!({ "id": a.id, "name": a.name })));
            }
            ("assign_conversation", data)
        }
        client_frame::Op::CloseConversation(c) => {
            ("close_conversation", json!({ "conversation_id": c.conversation_id }))
        }
        client_frame::Op::ReopenConversation(c) => {
            ("reopen_conversation", json!({ "conversation_id": c.conversation_id }))
        }
        client_frame::Op::RequestHuman(c) => {
            ("request_human", json!({ "conversation_id": c.conversation_id }))
        }
        client_frame::Op::SubscribeInbox(v) => ("subscribe_inbox", json!({ "view": v.view })),
        client_frame::Op::SetAvailability(a) => ("set_availability", json!({ "status": a.status })),
    };
    Ok(Operation { kind: kind.to_owned(), reference, data })
}

fn proto_frame(frame: Option<server_frame::Frame>) -> Vec<u8> {
    pb::ServerFrame { frame }.encode_to_vec()
}

/// Chat events are built as JSON for every transport; protobuf clients get
/// them back as their typed messages.
fn proto_event(name: &str, data: &Value) -> Option<server_frame::Frame> {
    use server_frame::Frame as F;
    let text = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let conversation_ref = || pb::ConversationRef { conversation_id: text("conversation_id") };
    Some(match name {
        "message:new" => F::MessageNew(pb::Message::from(&typed::<model::Message>(data)?)),
        "message:status" => F::MessageStatus(pb::MessageStatus::from(&typed::<model::StatusUpdate>(data)?)),
        "user_typing" => F::UserTyping(pb::Typing {
            conversation_id: text("conversation_id"),
            user_id: text("user_id"),
            typing: data.get("typing").and_then(Value::as_bool).unwrap_or_default(),
            origin: String::new(),
        }),
        "presence" => F::Presence(pb::Presence {
            conversation_id: text("conversation_id"),
            user_id: text("user_id"),
            role: text("role"),
            online: data.get("online").and_then(Value::as_bool).unwrap_or_default(),
            origin: String::new(),
        }),
        "conversation:new" => F::ConversationNew(conversation(data)?),
        "conversation:updated" => F::ConversationUpdated(conversation(data)?),
        "error" => F::Error(pb::Error { code: text("code"), message: text("message") }),
        "connected" => F::Connected(pb::Connected { user_id: text("user_id") }),
        "joined_conversation" => F::JoinedConversation(conversation_ref()),
        "left_conversation" => F::LeftConversation(conversation_ref()),
        "pong" => F::Pong(pb::Pong { at_ms: model::Timestamp::now().0 }),
        _ => return None,
    })
}

fn conversation(data: &Value) -> Option<pb::Conversation> {
    Some(pb::Conversation::from(&typed::<model::Conversation>(data.get("conversation")?)?))
}

fn typed<T: DeserializeOwned>(value: &Value) -> Option<T> {
    serde_json::from_value(value.clone()).ok()
}

fn proto_ack(Ack { reference, body }: &Ack) -> pb::Ack {
    let field = |key: &str| body.get(key);
    let messages = field("messages")
        .and_then(typed::<Vec<model::Message>>)
        .unwrap_or_default()
        .iter()
        .map(pb::Message::from)
        .collect();
    pb::Ack {
        r#ref: reference.as_str().map(str::to_owned).unwrap_or_else(|| reference.to_string()),
        ok: field("ok").and_then(Value::as_bool).unwrap_or_default(),
        error: field("error").and_then(typed::<ErrorBody>).map(|e| pb::Error::from(&e)),
        conversation_id: field("conversation_id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        offset: field("offset").and_then(Value::as_u64).unwrap_or_default(),
        messages,
        has_more: field("has_more").and_then(Value::as_bool).unwrap_or_default(),
        message: field("message").and_then(typed::<model::Message>).map(|m| pb::Message::from(&m)),
        status: field("status").and_then(typed::<model::StatusUpdate>).map(|s| pb::MessageStatus::from(&s)),
        conversation: field("conversation")
            .and_then(typed::<model::Conversation>)
            .map(|c| pb::Conversation::from(&c)),
        view: field("view").and_then(Value::as_str).unwrap_or_default().to_owned(),
        agent: field("agent").and_then(typed::<model::Agent>).map(|a| pb::Agent {
            id: a.id,
            name: a.name,
            availability: a.availability.as_str().into(),
            open_assigned: a.open_assigned,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protobuf_operation_reads_like_its_json_twin() {
        let frame = pb::ClientFrame {
            r#ref: "7".into(),
            op: Some(client_frame::Op::SendMessage(pb::SendText {
                conversation_id: "c1".into(),
                text: "hola".into(),
                client_msg_id: Some("k".into()),
                private: true,
            })),
        };
        let from_proto = proto_operation(&frame.encode_to_vec()).unwrap();
        let from_json = json_operation(
            r#"{"type":"send_message","ref":"7","conversation_id":"c1","text":"hola","client_msg_id":"k","private":true}"#,
        )
        .unwrap();
        assert_eq!(from_proto, from_json);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(proto_operation(&[0xff, 0xff, 0x01]).is_err());
        assert!(proto_operation(&pb::ClientFrame::default().encode_to_vec()).is_err());
        assert!(json_operation("[1,2]").is_err());
    }

    #[test]
    fn an_ack_keeps_its_fields_in_protobuf() {
        let body = json!({ "ok": false, "error": { "code": "forbidden", "message": "no" } });
        let ack = proto_ack(&Ack { reference: json!("r1"), body });
        assert_eq!(ack.r#ref, "r1");
        assert!(!ack.ok);
        assert_eq!(ack.error.unwrap().code, "forbidden");
    }
}
