//! The floor: what this machine delivers over WebSocket with no protocol at all.
//!
//! Plain text frames. A client sends `join <conv>` (answered `joined <conv>`);
//! a text frame `pub <conv> <payload>` is sent as is to every client joined to
//! `<conv>`, the sender included when it joined. No auth, no storage, no ids.
//!
//!   switchboard-floor --addr 127.0.0.1:9300

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Parser)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9300")]
    addr: SocketAddr,
    /// Frames queued per client before it is dropped as a slow consumer.
    #[arg(long, default_value_t = 1024)]
    queue: usize,
}

type Rooms = Arc<Mutex<HashMap<String, Vec<(u64, mpsc::Sender<Message>)>>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.addr).await?;
    println!("floor ready on {}", listener.local_addr()?);
    let rooms: Rooms = Arc::default();
    let ids = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(client(stream, id, rooms.clone(), args.queue));
    }
}

async fn client(stream: TcpStream, id: u64, rooms: Rooms, queue: usize) {
    let _ = stream.set_nodelay(true);
    // A small read buffer, as a memory-conscious server would set (tungstenite's default is 128 KiB),
    // and a write buffer, so that the writer's batch (below) goes out in a few system calls rather
    // than one per frame, as a tuned server's would.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(4096);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else { return };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(queue);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut joined: Vec<String> = Vec::new();
    while let Some(Ok(frame)) = source.next().await {
        let Message::Text(text) = frame else { continue };
        if let Some(conv) = text.strip_prefix("join ") {
            let conv = conv.trim().to_owned();
            rooms.lock().unwrap().entry(conv.clone()).or_default().push((id, tx.clone()));
            let _ = tx.try_send(Message::text(format!("joined {conv}")));
            joined.push(conv);
        } else if let Some(rest) = text.strip_prefix("pub ") {
            let conv = rest.split(' ').next().unwrap_or_default();
            let frame = Message::Text(text.clone());
            // try_send never waits: a full queue drops the frame (a slow consumer).
            if let Some(members) = rooms.lock().unwrap().get(conv) {
                for (_, member) in members {
                    let _ = member.try_send(frame.clone());
                }
            }
        }
    }
    writer.abort();
    let mut rooms = rooms.lock().unwrap();
    for conv in joined {
        if let Some(members) = rooms.get_mut(&conv) {
            members.retain(|(member, _)| *member != id);
        }
    }
}
