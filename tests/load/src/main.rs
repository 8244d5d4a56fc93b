//! Load generator for Switchboard and its peers, for the benchmark matrix
//! (`tests/bench/run`; README, Benchmarks).
//!
//! Opens `--connections` WebSockets across `--conversations` conversations,
//! bound to several loopback source addresses (127.0.0.1, .2, ...), joins each
//! to its conversation, then publishes at a fixed offered rate (messages/s)
//! over HTTP, over one extra publisher socket per conversation (`socket`), or
//! from the conversation's own sockets taking turns (`own`: support chat's
//! shape, the customer's widget and the agent answering). Each message text
//! carries its send time; every delivery records publish-to-deliver latency.
//!
//! Protocols: `sio` (Socket.IO v5 over WebSocket, by hand), `native`
//! (Switchboard's `/ws` JSON frames), `floor` (switchboard-floor's plain text).
//!
//! Modes: one fixed rate (`--rate`), a ramp (`--ramp`: doubling the rate until
//! fewer than `--ramp-ok` of the deliveries arrive, two bisections between the
//! last step that kept up and that one, then a phase at half the peak), or
//! `--idle` (connect, join, measure the server's memory, no traffic). Each
//! phase starts once the previous one's backlog has arrived.
//!
//! Prints one JSON object on a line, then one Markdown table row.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Protocol {
    Sio,
    Native,
    Floor,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Publish {
    Http,
    /// One more socket per conversation sends; it is not counted as a receiver.
    Socket,
    /// The conversation's receiving sockets send, in turn.
    Own,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "Switchboard load generator: fan-out throughput, latency, connections, memory")]
struct Args {
    /// Label for the output row.
    #[arg(long, default_value = "run")]
    label: String,
    #[arg(long, value_enum, default_value = "sio")]
    protocol: Protocol,
    /// Base URL of the server receiving sockets connect to.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Base URL publishes go to (default: --url), e.g. another edge.
    #[arg(long)]
    publish_url: Option<String>,
    #[arg(long, value_enum, default_value = "socket")]
    publish: Publish,
    /// Receiving connections in all.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Conversations the connections are spread over (round robin).
    #[arg(long, default_value_t = 1)]
    conversations: usize,
    /// Loopback source addresses to spread connections over (127.0.0.1 ..).
    #[arg(long, default_value_t = 4)]
    source_addrs: u8,
    /// Offered rate in messages per second, all conversations together.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds each publishing phase lasts.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Ramp: double the rate from --rate until deliveries fall short, bisect twice, then run at
    /// half the peak.
    #[arg(long)]
    ramp: bool,
    /// Ramp stops when fewer than this share of expected deliveries arrived (or p50 > 1 s).
    #[arg(long, default_value_t = 0.95)]
    ramp_ok: f64,
    /// Ramp steps at most, bisections included.
    #[arg(long, default_value_t = 12)]
    ramp_steps: u32,
    /// One more phase at this rate (messages/s), e.g. another system's half peak; repeatable.
    #[arg(long)]
    extra_rate: Vec<f64>,
    /// Only connect and join, then measure memory; no traffic.
    #[arg(long)]
    idle: bool,
    /// Server pid whose VmRSS is read before and after connecting.
    #[arg(long)]
    pid: Option<u32>,
    /// HS256 secret for the tokens (Switchboard and the Node peer).
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", default_value = "bench-secret")]
    secret: String,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// HTTP publishes in flight at most; a publish due beyond that is counted as not sent.
    #[arg(long, default_value_t = 256)]
    http_inflight: usize,
    /// Seconds allowed for connecting everything.
    #[arg(long, default_value_t = 120.0)]
    connect_timeout: f64,
    /// Seconds to wait for stragglers after a phase.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    /// Role of the receiving sockets' tokens: `customer` (the token lists its conversation),
    /// `agent` (agents also get every conversation's `conversation:updated`), or `support`
    /// (each conversation's first socket is its customer, the others agents).
    #[arg(long, default_value = "customer")]
    role: String,
    /// Print, for each 100 ms of the run, the deliveries and the slowest of
    /// them to stderr: stalls show as a window whose slowest is far above the rest.
    #[arg(long)]
    timeline: bool,
    /// Bytes of padding added to each message text.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Agent sockets that join nothing and only watch the inbox (`conversation:new/updated`),
    /// counted apart: the contact-centre shape of many agents beside the traffic.
    #[arg(long, default_value_t = 0)]
    watchers: usize,
    /// The watchers' `subscribe_inbox` view: all, mine, unassigned or none.
    #[arg(long, default_value = "all")]
    watch_view: String,
}

static START: OnceLock<Instant> = OnceLock::new();

fn now_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

const MAX_PHASES: usize = 32;
/// `--extra-rate` phases at most (the rest are ignored), so that ramp and extras fit MAX_PHASES.
const MAX_EXTRA_PHASES: usize = 8;
/// Bisections after the doubling ramp first falls behind.
const RAMP_REFINEMENTS: u32 = 2;
/// A backlog has cleared when nothing arrived for this long.
const SETTLED: Duration = Duration::from_millis(500);
/// ... or, for a server that never catches up, after this long.
const SETTLE_AT_MOST: Duration = Duration::from_secs(30);

/// Per-phase counters: deliveries, latency histogram, last delivery time.
struct Stats {
    delivered: Vec<AtomicU64>,
    last_us: Vec<AtomicU64>,
    hist: Vec<Mutex<Histogram<u64>>>,
    errors: AtomicU64,
    disconnects: AtomicU64,
    unsent: AtomicU64,
    /// Inbox events the watchers received, and watchers that were disconnected.
    inbox_events: AtomicU64,
    watchers_connected: AtomicU64,
    watcher_disconnects: AtomicU64,
    /// Per 100 ms window since the start: deliveries and the slowest (µs).
    windows: Vec<(AtomicU64, AtomicU64)>,
}

const WINDOW_US: u64 = 100_000;
const WINDOWS: usize = 1 << 13;

impl Stats {
    fn new() -> Self {
        Stats {
            delivered: (0..MAX_PHASES).map(|_| AtomicU64::new(0)).collect(),
            last_us: (0..MAX_PHASES).map(|_| AtomicU64::new(0)).collect(),
            hist: (0..MAX_PHASES)
                .map(|_| Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3).unwrap()))
                .collect(),
            errors: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            unsent: AtomicU64::new(0),
            inbox_events: AtomicU64::new(0),
            watchers_connected: AtomicU64::new(0),
            watcher_disconnects: AtomicU64::new(0),
            windows: (0..WINDOWS).map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect(),
        }
    }

    /// Waits until a previous phase's backlog has arrived, so that it does not
    /// count against the next phase.
    async fn settle(&self) {
        let total = || self.delivered.iter().map(|d| d.load(Ordering::Relaxed)).sum::<u64>();
        let give_up = Instant::now() + SETTLE_AT_MOST;
        let mut seen = total();
        while Instant::now() < give_up {
            tokio::time::sleep(SETTLED).await;
            let now = total();
            if now == seen {
                return;
            }
            seen = now;
        }
    }

    /// A delivered frame: find the `~T<phase>.<micros>~` marker and record it.
    fn record(&self, frame: &str) {
        // Only the message event itself (agents also get conversation:updated carrying the text).
        if !(frame.starts_with("42[\"message:new\"")
            || (frame.starts_with('{') && frame.contains("\"type\":\"message:new\""))
            || frame.starts_with("pub "))
        {
            return;
        }
        let Some(at) = frame.find("~T") else { return };
        let rest = &frame[at + 2..];
        let Some(end) = rest.find('~') else { return };
        let Some((phase, sent)) = rest[..end].split_once('.') else { return };
        let (Ok(phase), Ok(sent)) = (phase.parse::<usize>(), sent.parse::<u64>()) else { return };
        if phase >= MAX_PHASES {
            return;
        }
        let now = now_us();
        let window = &self.windows[(now / WINDOW_US) as usize % WINDOWS];
        window.0.fetch_add(1, Ordering::Relaxed);
        window.1.fetch_max(now.saturating_sub(sent), Ordering::Relaxed);
        self.delivered[phase].fetch_add(1, Ordering::Relaxed);
        self.last_us[phase].fetch_max(now, Ordering::Relaxed);
        let _ = self.hist[phase].lock().unwrap().record(now.saturating_sub(sent).max(1));
    }
}

fn token(secret: &str, sub: &str, role: &str, conv: Option<&str>) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 24 * 3600;
    let mut claims = json!({ "sub": sub, "role": role, "name": format!("Load {sub}"), "exp": exp });
    if let Some(conv) = conv {
        claims["conversations"] = json!([conv]);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign token")
}

fn ws_base(url: &str) -> String {
    url.trim_end_matches('/').replacen("http://", "ws://", 1)
}

fn host_port(url: &str) -> Result<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    Ok(rest.split('/').next().context("no host in url")?.to_owned())
}

type Ws = WebSocketStream<TcpStream>;

/// Connect from 127.0.0.<source>, then do the WebSocket handshake.
async fn open(url: &str, path: &str, source: u8) -> Result<Ws> {
    let hp = host_port(url)?;
    let addr = tokio::net::lookup_host(&hp).await?.next().context("resolve")?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, source], 0)))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let request = format!("{}{}", ws_base(url), path);
    let (ws, _) = tokio_tungstenite::client_async(request, stream).await?;
    Ok(ws)
}

async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(c))) => bail!("closed: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("closed"),
        }
    }
}

/// Connect and join one conversation; returns the socket ready for traffic.
async fn connect_join(args: &Args, url: &str, conv: &str, user: &str, source: u8, role: &str) -> Result<Ws> {
    // A customer may only be in its own conversation: every customer socket of
    // one is that conversation's customer (one person's devices and tabs).
    let customer = format!("c-{conv}");
    let user = if role == "customer" { customer.as_str() } else { user };
    let token = || token(&args.secret, user, role, (role == "customer").then_some(conv));
    match args.protocol {
        Protocol::Sio => {
            let mut ws = sio_connect(url, &token(), source).await?;
            let join = json!(["join_conversation", { "conversation_id": conv }]);
            ws.send(Message::text(format!("421{join}"))).await?;
            loop {
                let t = next_text(&mut ws).await?;
                if t.starts_with("431") {
                    if !t.contains("\"ok\":true") {
                        bail!("join refused: {t}");
                    }
                    return Ok(ws);
                }
                if t == "2" {
                    ws.send(Message::text("3")).await?;
                }
            }
        }
        Protocol::Native => {
            let path = format!("/ws?token={}", token());
            let mut ws = open(url, &path, source).await?;
            let join = json!({ "type": "join_conversation", "ref": 1, "conversation_id": conv });
            ws.send(Message::text(join.to_string())).await?;
            loop {
                let t = next_text(&mut ws).await?;
                if t.contains("\"type\":\"ack\"") {
                    if !t.contains("\"ok\":true") {
                        bail!("join refused: {t}");
                    }
                    return Ok(ws);
                }
            }
        }
        Protocol::Floor => {
            let mut ws = open(url, "/", source).await?;
            ws.send(Message::text(format!("join {conv}"))).await?;
            loop {
                if next_text(&mut ws).await?.starts_with("joined ") {
                    return Ok(ws);
                }
            }
        }
    }
}

/// A Socket.IO connection to namespace `/`, past its CONNECT.
async fn sio_connect(url: &str, token: &str, source: u8) -> Result<Ws> {
    let mut ws = open(url, "/socket.io/?EIO=4&transport=websocket", source).await?;
    let open_packet = next_text(&mut ws).await?;
    if !open_packet.starts_with('0') {
        bail!("expected engine.io open, got {open_packet}");
    }
    let auth = json!({ "token": token });
    ws.send(Message::text(format!("40{auth}"))).await?;
    loop {
        let t = next_text(&mut ws).await?;
        if t.starts_with("40") {
            return Ok(ws);
        }
        if t.starts_with("44") {
            bail!("connect_error {t}");
        }
        if t == "2" {
            ws.send(Message::text("3")).await?;
        }
    }
}

/// An agent socket that joins nothing and watches its inbox view.
async fn watcher(args: &Args, i: usize, source: u8) -> Result<Ws> {
    let token = token(&args.secret, &format!("load-watcher-{i}"), "agent", None);
    let (mut ws, subscribe) = match args.protocol {
        Protocol::Sio => {
            let ws = sio_connect(&args.url, &token, source).await?;
            (ws, format!("42{}", json!(["subscribe_inbox", { "view": args.watch_view }])))
        }
        Protocol::Native => {
            let ws = open(&args.url, &format!("/ws?token={token}"), source).await?;
            (ws, json!({ "type": "subscribe_inbox", "view": args.watch_view }).to_string())
        }
        Protocol::Floor => bail!("the floor server has no inbox"),
    };
    ws.send(Message::text(subscribe)).await?;
    Ok(ws)
}

/// Counts a watcher's inbox events until its socket ends.
async fn count_inbox(mut ws: Ws, stats: &Stats) {
    while let Some(Ok(frame)) = ws.next().await {
        match frame {
            Message::Text(t) if t.as_str() == "2" => {
                // Engine.IO's ping: a watcher that stops answering is closed.
                let pong = ws.send(Message::text("3")).await;
                if pong.is_err() {
                    break;
                }
            }
            Message::Text(t) if t.contains("conversation:updated") || t.contains("conversation:new") => {
                stats.inbox_events.fetch_add(1, Ordering::Relaxed);
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    stats.watcher_disconnects.fetch_add(1, Ordering::Relaxed);
}

/// Reads frames until the socket ends; records deliveries, answers Engine.IO pings.
/// With `outbox`, also writes the frames it is given (a publisher).
async fn pump(ws: Ws, stats: Arc<Stats>, count: bool, mut outbox: Option<mpsc::UnboundedReceiver<String>>) {
    let (mut sink, mut source) = ws.split();
    loop {
        tokio::select! {
            frame = source.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    if t.as_str() == "2" {
                        if sink.send(Message::text("3")).await.is_err() { break; }
                    } else if count {
                        stats.record(t.as_str());
                    }
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(_)) => break,
            },
            out = async { match outbox.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                let Some(first) = out else { outbox = None; continue };
                let mut ok = sink.feed(Message::text(first)).await.is_ok();
                if let Some(rx) = outbox.as_mut() {
                    while ok && let Ok(more) = rx.try_recv() {
                        ok = sink.feed(Message::text(more)).await.is_ok();
                    }
                }
                if !ok || sink.flush().await.is_err() {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    stats.disconnects.fetch_add(1, Ordering::Relaxed);
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn conversation_id(i: usize) -> String {
    // UUID-shaped, unique per run.
    let run = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() & 0xffff_ffff;
    format!("{run:08x}-0000-4000-8000-{i:012x}")
}

async fn create_conversations(args: &Args, http: &reqwest::Client, ids: &[String]) -> Result<()> {
    if args.protocol == Protocol::Floor {
        return Ok(());
    }
    let url = format!("{}/api/v1/conversations", args.publish_url.as_deref().unwrap_or(&args.url));
    let bearer = format!("Bearer {}", token(&args.secret, "load-service", "service", None));
    for id in ids {
        let body =
            json!({ "id": id, "channel": "web", "customer": { "id": format!("c-{id}"), "name": "Load" } });
        let res = http.post(&url).header("authorization", &bearer).json(&body).send().await?;
        if !res.status().is_success() {
            bail!("POST {url} answered {}: {}", res.status(), res.text().await.unwrap_or_default());
        }
    }
    Ok(())
}

struct Phase {
    rate: f64,
    sent: u64,
    unsent: u64,
    expected: u64,
    delivered: u64,
    seconds: f64,
    deliveries_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

impl Phase {
    fn json(&self) -> Value {
        json!({
            "offered_msgs_per_s": self.rate, "sent": self.sent, "unsent": self.unsent,
            "expected_deliveries": self.expected, "delivered": self.delivered,
            "delivered_share": if self.expected > 0 { self.delivered as f64 / self.expected as f64 } else { 0.0 },
            "seconds": self.seconds, "deliveries_per_s": self.deliveries_per_s,
            "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "p999_ms": self.p999_ms, "max_ms": self.max_ms,
        })
    }
}

struct Publisher {
    args: Args,
    convs: Vec<String>,
    receivers_per_conv: Vec<u64>,
    /// Per conversation, the sockets that send into it, taking turns.
    sockets: Vec<Vec<mpsc::UnboundedSender<String>>>,
    http: reqwest::Client,
    bearer: String,
    inflight: Arc<Semaphore>,
    stats: Arc<Stats>,
    pad: String,
}

impl Publisher {
    fn frame(&self, conv: &str, text: &str) -> String {
        match self.args.protocol {
            Protocol::Sio => {
                format!("42{}", json!(["send_message", { "conversation_id": conv, "text": text }]))
            }
            Protocol::Native => {
                json!({ "type": "send_message", "conversation_id": conv, "text": text }).to_string()
            }
            Protocol::Floor => format!("pub {conv} {text}"),
        }
    }

    /// One publishing phase at `rate` messages/s for the configured duration, then a drain.
    async fn run(&self, phase: usize, rate: f64) -> Phase {
        let duration = Duration::from_secs_f64(self.args.duration);
        let start = Instant::now();
        let phase_start_us = now_us();
        let (mut sent, mut unsent, mut expected) = (0u64, 0u64, 0u64);
        let mut next = 0usize;
        let base =
            self.args.publish_url.as_deref().unwrap_or(&self.args.url).trim_end_matches('/').to_owned();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while start.elapsed() < duration {
            tick.tick().await;
            let due = (start.elapsed().as_secs_f64().min(self.args.duration) * rate) as u64;
            while sent + unsent < due {
                let (c, turn) = (next % self.convs.len(), next / self.convs.len());
                next += 1;
                let conv = &self.convs[c];
                let text = format!("~T{phase}.{}~ {}", now_us(), self.pad);
                match self.args.publish {
                    Publish::Socket | Publish::Own => {
                        let senders = &self.sockets[c];
                        let _ = senders[turn % senders.len()].send(self.frame(conv, &text));
                        sent += 1;
                        expected += self.receivers_per_conv[c];
                    }
                    Publish::Http => match self.inflight.clone().try_acquire_owned() {
                        Ok(permit) => {
                            sent += 1;
                            expected += self.receivers_per_conv[c];
                            let req = self
                                .http
                                .post(format!("{base}/api/v1/conversations/{conv}/messages"))
                                .header("authorization", &self.bearer)
                                .json(&json!({ "text": text }));
                            let stats = self.stats.clone();
                            tokio::spawn(async move {
                                match req.send().await {
                                    Ok(r) if r.status().is_success() => {}
                                    _ => {
                                        stats.errors.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            unsent += 1;
                            self.stats.unsent.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                }
            }
        }
        // Drain: until everything expected arrived or the drain time passed.
        let drain_until = Instant::now() + Duration::from_secs_f64(self.args.drain);
        while Instant::now() < drain_until && self.stats.delivered[phase].load(Ordering::Relaxed) < expected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let delivered = self.stats.delivered[phase].load(Ordering::Relaxed);
        let last = self.stats.last_us[phase].load(Ordering::Relaxed);
        let seconds = if last > phase_start_us {
            ((last - phase_start_us) as f64 / 1e6).max(self.args.duration)
        } else {
            self.args.duration
        };
        let h = self.stats.hist[phase].lock().unwrap().clone();
        let ms = |v: u64| (v as f64 / 1000.0 * 100.0).round() / 100.0;
        let empty = h.is_empty();
        let q = |x: f64| if empty { 0.0 } else { ms(h.value_at_quantile(x)) };
        Phase {
            rate,
            sent,
            unsent,
            expected,
            delivered,
            seconds,
            deliveries_per_s: (delivered as f64 / seconds).round(),
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: if empty { 0.0 } else { ms(h.max()) },
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    START.get_or_init(Instant::now);
    let stats = Arc::new(Stats::new());
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.http_inflight).build()?;
    let convs: Vec<String> = (0..args.conversations.max(1)).map(conversation_id).collect();
    create_conversations(&args, &http, &convs).await?;

    let rss_before = args.pid.and_then(vm_rss_kib);
    let sources = args.source_addrs.max(1);
    // Receivers.
    let sem = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let connect_start = Instant::now();
    let mut own_senders: Vec<Vec<mpsc::UnboundedSender<String>>> = vec![Vec::new(); convs.len()];
    for i in 0..args.connections {
        let args2 = args.clone();
        let conv = convs[i % convs.len()].clone();
        let stats = stats.clone();
        let sem = sem.clone();
        let ready = ready_tx.clone();
        let outbox = (args.publish == Publish::Own).then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            own_senders[i % convs.len()].push(tx);
            rx
        });
        // `support`: the conversation's first socket is its customer, the others its agents.
        let role = match args.role.as_str() {
            "support" if i < convs.len() => "customer".to_owned(),
            "support" => "agent".to_owned(),
            other => other.to_owned(),
        };
        // `own` with two URLs (two edges): a conversation's sockets alternate
        // between them, the customer on the publish URL, the next on the other.
        let url = match (&args.publish_url, args.publish) {
            (Some(publish_url), Publish::Own) if (i / convs.len()).is_multiple_of(2) => publish_url.clone(),
            _ => args.url.clone(),
        };
        tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let source = 1 + (i % sources as usize) as u8;
            let user = format!("load-{i}");
            let res = connect_join(&args2, &url, &conv, &user, source, &role).await;
            drop(permit);
            match res {
                Ok(ws) => {
                    let _ = ready.send(Ok(()));
                    pump(ws, stats, true, outbox).await;
                }
                Err(e) => {
                    let _ = ready.send(Err(format!("{e:#}")));
                }
            }
        });
    }
    for i in 0..args.watchers {
        let (args, stats, sem, ready) = (args.clone(), stats.clone(), sem.clone(), ready_tx.clone());
        tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let res = watcher(&args, i, 1 + (i % sources as usize) as u8).await;
            drop(permit);
            match res {
                Ok(ws) => {
                    stats.watchers_connected.fetch_add(1, Ordering::Relaxed);
                    let _ = ready.send(Ok(()));
                    count_inbox(ws, &stats).await;
                }
                Err(e) => {
                    let _ = ready.send(Err(format!("watcher: {e:#}")));
                }
            }
        });
    }
    drop(ready_tx);
    let (mut connected, mut connect_errors, mut first_error) = (0usize, 0usize, None::<String>);
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.connect_timeout);
    while connected + connect_errors < args.connections + args.watchers {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => connected += 1,
            Ok(Some(Err(e))) => {
                connect_errors += 1;
                first_error.get_or_insert(e);
            }
            Ok(None) | Err(_) => break,
        }
    }
    // The watchers are counted apart.
    let watchers = stats.watchers_connected.load(Ordering::Relaxed) as usize;
    connected -= watchers;
    let connect_secs = connect_start.elapsed().as_secs_f64();
    let connect_rate = (connected as f64 / connect_secs).round();
    tokio::time::sleep(Duration::from_millis(if args.idle { 2000 } else { 500 })).await;
    let rss_after = args.pid.and_then(vm_rss_kib);
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if connected > 0 => {
            Some(((a as f64 - b as f64) * 1024.0 / connected as f64).round())
        }
        _ => None,
    };

    let mut out = json!({
        "label": args.label, "protocol": format!("{:?}", args.protocol).to_lowercase(),
        "publish": format!("{:?}", args.publish).to_lowercase(),
        "connections": args.connections, "connected": connected, "connect_errors": connect_errors,
        "first_connect_error": first_error, "conversations": convs.len(),
        "connect_secs": (connect_secs * 100.0).round() / 100.0, "connects_per_s": connect_rate,
        "rss_before_kib": rss_before, "rss_after_kib": rss_after, "server_bytes_per_conn": per_conn,
    });

    let traffic_start = (Instant::now(), stats.inbox_events.load(Ordering::Relaxed));
    if !args.idle && connected > 0 {
        let mut receivers_per_conv = vec![0u64; convs.len()];
        for i in 0..args.connections {
            receivers_per_conv[i % convs.len()] += 1;
        }
        // Publishers: one socket per conversation (not counted as receivers),
        // or the receivers themselves.
        let mut sockets = std::mem::take(&mut own_senders);
        if args.publish == Publish::Socket {
            let purl = args.publish_url.clone().unwrap_or_else(|| args.url.clone());
            for (c, conv) in convs.iter().enumerate() {
                let ws = connect_join(&args, &purl, conv, &format!("load-pub-{c}"), 1, "agent")
                    .await
                    .map_err(|e| anyhow!("publisher connect: {e:#}"))?;
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(pump(ws, stats.clone(), false, Some(rx)));
                sockets[c].push(tx);
            }
        }
        let publisher = Publisher {
            bearer: format!("Bearer {}", token(&args.secret, "load-service", "service", None)),
            inflight: Arc::new(Semaphore::new(args.http_inflight.max(1))),
            pad: "x".repeat(args.payload),
            args: args.clone(),
            convs: convs.clone(),
            receivers_per_conv,
            sockets,
            http: http.clone(),
            stats: stats.clone(),
        };
        let mut phases = Vec::new();
        let mut phase_no = 0usize;
        if args.ramp {
            let mut rate = args.rate;
            // The peak is the best step that kept up; a step that fell behind
            // counts only when none did.
            let (mut peak, mut best_failed): (Option<Phase>, Option<Phase>) = (None, None);
            let (mut last_ok, mut failed, mut refined) = (None::<f64>, None::<f64>, 0);
            for _ in
                0..args.ramp_steps.min((MAX_PHASES - 1 - args.extra_rate.len().min(MAX_EXTRA_PHASES)) as u32)
            {
                stats.settle().await;
                let p = publisher.run(phase_no, rate).await;
                phase_no += 1;
                eprintln!(
                    "[{}] rate {rate:.0}/s: {} deliveries/s, share {:.3}, p50 {} ms, p99 {} ms",
                    args.label,
                    p.deliveries_per_s,
                    p.delivered as f64 / p.expected.max(1) as f64,
                    p.p50_ms,
                    p.p99_ms
                );
                let ok = p.expected > 0
                    && p.delivered as f64 >= args.ramp_ok * p.expected as f64
                    && p.p50_ms < 1000.0;
                phases.push(p.json());
                let best = if ok { &mut peak } else { &mut best_failed };
                if best.as_ref().is_none_or(|b| p.deliveries_per_s > b.deliveries_per_s) {
                    *best = Some(p);
                }
                if ok {
                    last_ok = Some(rate);
                } else {
                    failed = Some(rate);
                }
                // Double until a step falls behind, then bisect (geometrically)
                // between the last step that kept up and it, twice.
                rate = match (last_ok, failed) {
                    (_, None) => rate * 2.0,
                    (Some(lo), Some(hi)) if refined < RAMP_REFINEMENTS => {
                        refined += 1;
                        (lo * hi).sqrt()
                    }
                    _ => break,
                };
            }
            let peak = peak.or(best_failed).expect("at least one ramp step");
            stats.settle().await;
            let half_rate = (peak.deliveries_per_s / 2.0 / (connected as f64 / convs.len() as f64)).max(1.0);
            let half = publisher.run(phase_no, half_rate).await;
            phase_no += 1;
            out["peak_deliveries_per_s"] = json!(peak.deliveries_per_s);
            out["peak_offered_msgs_per_s"] = json!(peak.rate);
            out["half_peak"] = half.json();
        } else {
            let p = publisher.run(phase_no, args.rate).await;
            phase_no += 1;
            out["peak_deliveries_per_s"] = json!(p.deliveries_per_s);
            out["fixed"] = p.json();
        }
        let mut extras = Vec::new();
        for &extra in args.extra_rate.iter().take(MAX_EXTRA_PHASES) {
            stats.settle().await;
            extras.push(publisher.run(phase_no, extra).await.json());
            phase_no += 1;
        }
        out["extras"] = Value::Array(extras);
        out["steps"] = Value::Array(phases);
    }
    if args.timeline {
        for (at, (count, slowest)) in
            stats.windows.iter().enumerate().take((now_us() / WINDOW_US) as usize + 1)
        {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                let ms = slowest.load(Ordering::Relaxed) as f64 / 1000.0;
                eprintln!("timeline {:.1} s: {count} deliveries, slowest {ms:.1} ms", at as f64 / 10.0);
            }
        }
    }
    if args.watchers > 0 {
        let events = stats.inbox_events.load(Ordering::Relaxed) - traffic_start.1;
        let seconds = traffic_start.0.elapsed().as_secs_f64();
        out["watchers"] = json!({
            "sockets": args.watchers, "connected": watchers, "view": args.watch_view,
            "inbox_events": events,
            "per_watcher_per_s": (events as f64 / watchers.max(1) as f64 / seconds * 100.0).round() / 100.0,
            "disconnected": stats.watcher_disconnects.load(Ordering::Relaxed),
        });
    }
    out["errors"] = json!(stats.errors.load(Ordering::Relaxed));
    out["disconnects"] = json!(stats.disconnects.load(Ordering::Relaxed));
    out["unsent"] = json!(stats.unsent.load(Ordering::Relaxed));
    println!("{out}");
    println!("{}", markdown_row(&out));
    Ok(())
}

fn markdown_row(o: &Value) -> String {
    let lat = o.get("half_peak").or_else(|| o.get("fixed"));
    let f = |v: Option<&Value>| match v {
        Some(Value::Null) | None => "-".to_owned(),
        Some(v) => v.to_string(),
    };
    let l = |k: &str| f(lat.and_then(|p| p.get(k)));
    let kib = o["server_bytes_per_conn"].as_f64().map(|b| format!("{:.1}", b / 1024.0));
    format!(
        "| {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        o["label"].as_str().unwrap_or("-"),
        o["protocol"].as_str().unwrap_or("-"),
        o["connected"],
        o["connections"],
        o["conversations"],
        o["connects_per_s"],
        f(o.get("peak_deliveries_per_s")),
        l("p50_ms"),
        l("p99_ms"),
        l("p999_ms"),
        l("max_ms"),
        kib.unwrap_or_else(|| "-".to_owned()),
        o["errors"].as_u64().unwrap_or(0)
            + o["connect_errors"].as_u64().unwrap_or(0)
            + o["disconnects"].as_u64().unwrap_or(0),
    )
}
