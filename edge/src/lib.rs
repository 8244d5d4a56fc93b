//! An edge node: holds client sockets, serves the HTTP API, and moves events
//! between sockets and the bus. It writes nothing itself: every write is a
//! command for the workers.
//!
//! The modules form layers with no import circle (`tests/lint/module_cycles.py`
//! checks): a module uses only modules of its own layer or of those before it.
//!
//! - Leaves, which use only one another: [`error`] (the one error shape:
//!   [`error::ErrorCode`], [`error::ApiError`]), [`config`], [`limits`] (rate
//!   limits), [`query`] (query strings), [`auth`] (tokens and who may do
//!   what), [`clients`] (a client's address behind trusted proxies),
//!   [`visitors`] (widget visitor ids and signed-in users' hashes),
//!   [`rules`] (id and text checks), [`wire`] (what a client sees:
//!   event names, payloads, the answer shape), [`telemetry`] (the series an
//!   edge exports, HTTP request figures, the scrape), [`relay`] (counted bus
//!   subscriptions that connections share), [`sockets`] (how many this edge
//!   holds).
//! - Then: [`session`] (a connection's state), [`feed`] (ordered, gap-free
//!   delivery per conversation), [`pacer`] (agents' inbox updates from new
//!   messages, paced per socket), [`commands`] (writes, as commands to the
//!   workers), [`state`] ([`state::EdgeState`], what every handler shares),
//!   [`writes`] (`send_message` and `set_status`, shared by HTTP and sockets),
//!   [`agents`] (the agents connected here, announced to the cluster),
//!   [`handling`] (assignment, status and availability, shared by HTTP and sockets),
//!   [`chat`] (the one table of [`chat::Operation`]s, and the operations).
//! - Transports: [`socketio`] (Socket.IO clients), [`native`] (the native
//!   WebSocket protocol), [`http`] (the HTTP API).
//!
//! [`Edge`], here, wires them together.

pub mod agents;
pub mod auth;
pub mod chat;
pub mod clients;
pub mod commands;
pub mod config;
pub mod error;
pub mod feed;
pub mod handling;
pub mod http;
pub mod limits;
pub mod native;
pub mod pacer;
pub mod query;
pub mod relay;
pub mod rules;
pub mod session;
pub mod socketio;
pub mod sockets;
pub mod state;
pub mod telemetry;
pub mod visitors;
pub mod wire;
pub mod writes;

use std::sync::Arc;

use switchboard_bus::Bus;
use switchboard_bus::roster::{Announcer, EdgeSeen};
use switchboard_bus::rpc::Caller;
use switchboard_store::ReadStore;

use crate::commands::Commands;
use crate::config::EdgeConfig;
use crate::feed::Feeds;
use crate::feed::{Fanout, Fanouts, relay_inbox};
use crate::native::rooms::NativeRooms;
use crate::socketio::fanout::SocketIoFanout;
use crate::socketio::hub::Hub;
use crate::state::EdgeState;

/// A started edge: its router to serve, and its state for shutdown.
pub struct Edge {
    pub router: axum::Router,
    pub state: Arc<EdgeState>,
    native: Arc<NativeRooms>,
    socketio: Arc<Hub>,
    announcer: Announcer,
}

impl Edge {
    pub async fn start(
        config: EdgeConfig,
        bus: Arc<dyn Bus>,
        store: Arc<dyn ReadStore>,
        metrics: telemetry::Scrape,
    ) -> anyhow::Result<Self> {
        let (layer, io) = socketio::layer(&config.limits);
        let caller = Caller::start(bus.clone(), &config.node_id, config.limits.command_timeout).await?;
        let native = NativeRooms::start();
        let fanout: Arc<dyn Fanout> =
            Arc::new(Fanouts(vec![SocketIoFanout::start(io.clone()), native.clone()]));
        let feeds = Feeds::new(
            bus.clone(),
            store.clone(),
            fanout.clone(),
            config.limits.history_page,
            config.limits.max_recovery,
        );
        relay_inbox(bus.as_ref(), fanout).await?;
        let cors = http::cors(&config.cors_origins, &config.widget.sites);
        let commands = Commands::new(caller, config.partitions);
        let state = Arc::new(EdgeState::new(config, bus, store, commands, feeds, metrics));
        let socketio = socketio::start(state.clone(), io);
        let announcer = {
            let (seen, node) = (state.clone(), state.config.node_id.clone());
            Announcer::edge(state.bus.leases(), &node.clone(), state.agents.changed.clone(), move || {
                EdgeSeen { node: node.clone(), sockets: seen.sockets.count(), agents: seen.agents.snapshot() }
            })
        };
        let router = http::router(state.clone())
            .merge(native::routes(native.clone()).with_state(state.clone()))
            // After every merge: a merged router's fallback replaces the one before,
            // and each route and the fallback must be counted.
            .layer(axum::middleware::from_fn(telemetry::track_http))
            .layer(axum::middleware::map_response(http::json_errors))
            .layer(layer)
            .layer(axum::middleware::map_request(socketio::detach_handshake_head))
            .layer(cors);
        Ok(Self { router, state, native, socketio, announcer })
    }

    /// Stops taking sockets and closes the connected ones' transports, which
    /// socket.io clients answer by reconnecting (to another node).
    pub async fn drain(&self) {
        self.state.start_draining();
        self.announcer.withdraw().await;
        self.native.close_all();
        self.socketio.io.close().await;
    }
}
