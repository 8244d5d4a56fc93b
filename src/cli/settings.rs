//! Settings, in order of precedence: flags, `SWITCHBOARD_*` environment, the
//! TOML file named by `--config` / `SWITCHBOARD_CONFIG`, defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use switchboard_edge::config::{
    Limits, SyncApiKeys, TrustedProxies, WidgetConfig, parse_api_keys, parse_widget_sites,
};
use switchboard_edge::http::whatsapp::WebhookConfig;
use switchboard_workers::whatsapp::WhatsappConfig;

/// Declares the settings once: each is a flag, an environment variable and a
/// TOML key (the flag's name with `_`).
macro_rules! settings {
    ($($(#[$doc:meta])* $field:ident: $ty:ty = $env:literal),+ $(,)?) => {
        #[derive(clap::Args, Deserialize, Default, Debug, Clone)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            /// A TOML file with any of these settings.
            #[arg(long, env = "SWITCHBOARD_CONFIG")]
            #[serde(skip)]
            pub config: Option<PathBuf>,
            $($(#[$doc])* #[arg(long, env = $env)] pub $field: Option<$ty>,)+
        }

        impl Settings {
            /// Fills what flags and environment left open from `file`.
            fn or(self, file: Settings) -> Settings {
                Settings { config: self.config, $($field: self.$field.or(file.$field),)+ }
            }
        }
    };
}

settings! {
    /// Listen address.
    http_addr: SocketAddr = "SWITCHBOARD_HTTP_ADDR",
    /// Workers: where `/metrics` and `/healthz` listen (unset: nowhere).
    metrics_addr: SocketAddr = "SWITCHBOARD_METRICS_ADDR",
    /// Where `dev` keeps its SQLite file.
    data_dir: PathBuf = "SWITCHBOARD_DATA_DIR",
    /// NATS server(s) of a scale-out cluster, comma-separated.
    nats_url: String = "SWITCHBOARD_NATS_URL",
    /// Copies of each JetStream stream (3 on a three-node NATS cluster).
    nats_replicas: usize = "SWITCHBOARD_NATS_REPLICAS",
    /// Partitions of chat and sync commands; the same in every process (default 32, `dev` 1).
    partitions: u32 = "SWITCHBOARD_PARTITIONS",
    /// How long a worker's hold on a partition lasts without renewal (default 3000).
    lease_ms: u64 = "SWITCHBOARD_LEASE_MS",
    /// PostgreSQL of a scale-out cluster.
    database_url: String = "SWITCHBOARD_DATABASE_URL",
    /// This process's name on the bus; unique per process (default: role and a random suffix).
    node_id: String = "SWITCHBOARD_NODE_ID",
    /// HS256 secret for user, bot and service tokens.
    jwt_secret: String = "SWITCHBOARD_JWT_SECRET",
    /// Allowed browser origins, comma-separated.
    cors_origins: String = "SWITCHBOARD_CORS_ORIGINS",
    /// Largest Socket.IO or HTTP payload, bytes.
    max_payload: usize = "SWITCHBOARD_MAX_PAYLOAD",
    /// Longest message text, characters.
    max_text_len: usize = "SWITCHBOARD_MAX_TEXT_LEN",
    /// Conversations one socket may be in.
    max_joins: usize = "SWITCHBOARD_MAX_JOINS",
    /// Messages per second per connection.
    publish_rate: u32 = "SWITCHBOARD_PUBLISH_RATE",
    /// Typing events per second per connection.
    typing_rate: u32 = "SWITCHBOARD_TYPING_RATE",
    /// Milliseconds after which a typing indicator ends by itself.
    typing_ttl_ms: u64 = "SWITCHBOARD_TYPING_TTL_MS",
    /// Packets queued per socket before a client that stopped reading is dropped.
    outbound_buffer: usize = "SWITCHBOARD_OUTBOUND_BUFFER",
    /// Seconds a bot reply waits for its user to connect before it is dropped.
    bot_reply_ttl_s: u64 = "SWITCHBOARD_BOT_REPLY_TTL_S",
    /// `round_robin`: new and pending conversations go to the online agent with the fewest open ones (default off).
    auto_assign: String = "SWITCHBOARD_AUTO_ASSIGN",
    /// Seconds SIGTERM waits for in-flight work before exiting.
    drain_timeout_s: u64 = "SWITCHBOARD_DRAIN_TIMEOUT_S",
    /// Milliseconds a connection may take to send a request's headers, and may stay idle between requests.
    header_timeout_ms: u64 = "SWITCHBOARD_HEADER_TIMEOUT_MS",
    /// Milliseconds an edge waits for a worker to answer a write before telling the client `outcome_unknown`.
    command_timeout_ms: u64 = "SWITCHBOARD_COMMAND_TIMEOUT_MS",
    /// WhatsApp: the token Meta echoes in the webhook verification handshake.
    wa_verify_token: String = "SWITCHBOARD_WA_VERIFY_TOKEN",
    /// WhatsApp: the app secret that signs webhooks (X-Hub-Signature-256).
    wa_app_secret: String = "SWITCHBOARD_WA_APP_SECRET",
    /// WhatsApp: the Graph API access token sends use.
    wa_access_token: String = "SWITCHBOARD_WA_ACCESS_TOKEN",
    /// WhatsApp: the business phone number id messages are sent from.
    wa_phone_number_id: String = "SWITCHBOARD_WA_PHONE_NUMBER_ID",
    /// WhatsApp: the Graph API base URL.
    wa_graph_base: String = "SWITCHBOARD_WA_GRAPH_BASE",
    /// WhatsApp: sends per second per phone number.
    wa_rate: u32 = "SWITCHBOARD_WA_RATE",
    /// Sync API keys, `tenant=key` pairs, comma-separated.
    sync_api_keys: String = "SWITCHBOARD_SYNC_API_KEYS",
    /// Widget site keys and the page origins allowed each, `site_key=origin` pairs, comma-separated (`*`: any origin).
    widget_sites: String = "SWITCHBOARD_WIDGET_SITES",
    /// HMAC secret that signs `user_hash` for the widget's signed-in users.
    widget_identity_secret: String = "SWITCHBOARD_WIDGET_IDENTITY_SECRET",
    /// Seconds a widget visitor's token lasts (default 3600).
    widget_token_ttl_s: u64 = "SWITCHBOARD_WIDGET_TOKEN_TTL_S",
    /// Widget session requests per minute per client address (default 10).
    widget_session_rate: u32 = "SWITCHBOARD_WIDGET_SESSION_RATE",
    /// Proxies whose X-Forwarded-For names the client: addresses or CIDR networks, comma-separated.
    trusted_proxies: String = "SWITCHBOARD_TRUSTED_PROXIES",
}

/// Settings with every default applied.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub http_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub nats_url: Option<String>,
    pub nats_replicas: usize,
    /// As configured; each mode has its default.
    pub partitions: Option<u32>,
    pub lease: Duration,
    pub database_url: Option<String>,
    pub node_id: Option<String>,
    pub jwt_secret: Option<String>,
    pub cors_origins: Vec<String>,
    pub limits: Limits,
    pub drain_timeout: Duration,
    pub header_timeout: Duration,
    pub bot_reply_ttl: Duration,
    pub auto_assign: bool,
    pub sync_api_keys: SyncApiKeys,
    pub widget: WidgetConfig,
    pub trusted_proxies: TrustedProxies,
    /// The webhook's side of WhatsApp (edges).
    pub wa_webhook: WebhookConfig,
    /// The sending side of WhatsApp (`worker whatsapp`).
    pub whatsapp: WhatsappConfig,
}

impl Settings {
    pub fn resolve(self) -> anyhow::Result<Resolved> {
        let file = match &self.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Settings::default(),
        };
        let s = self.or(file);
        let defaults = Limits::default();
        let limits = Limits {
            max_payload: s.max_payload.unwrap_or(defaults.max_payload),
            max_text_len: s.max_text_len.unwrap_or(defaults.max_text_len),
            max_joins: s.max_joins.unwrap_or(defaults.max_joins),
            publish_rate: s.publish_rate.unwrap_or(defaults.publish_rate),
            typing_rate: s.typing_rate.unwrap_or(defaults.typing_rate),
            typing_ttl: s.typing_ttl_ms.map_or(defaults.typing_ttl, Duration::from_millis),
            outbound_buffer: s.outbound_buffer.unwrap_or(defaults.outbound_buffer),
            command_timeout: s.command_timeout_ms.map_or(defaults.command_timeout, Duration::from_millis),
            ..defaults
        };
        Ok(Resolved {
            http_addr: s.http_addr.unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid default")),
            metrics_addr: s.metrics_addr,
            data_dir: s.data_dir.unwrap_or_else(|| "./data".into()),
            nats_url: s.nats_url.filter(|u| !u.is_empty()),
            nats_replicas: s.nats_replicas.unwrap_or(1).max(1),
            partitions: s.partitions,
            lease: s.lease_ms.map_or(switchboard_bus::leases::DEFAULT_TTL, Duration::from_millis),
            database_url: s.database_url.filter(|u| !u.is_empty()),
            node_id: s.node_id.filter(|n| !n.is_empty()),
            jwt_secret: s.jwt_secret.filter(|s| !s.is_empty()),
            cors_origins: s
                .cors_origins
                .map(|o| o.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default(),
            limits,
            drain_timeout: Duration::from_secs(s.drain_timeout_s.unwrap_or(10)),
            header_timeout: Duration::from_millis(s.header_timeout_ms.unwrap_or(10_000).max(1)),
            bot_reply_ttl: Duration::from_secs(s.bot_reply_ttl_s.unwrap_or(7 * 24 * 3600)),
            auto_assign: match s.auto_assign.as_deref().map(str::trim) {
                None | Some("" | "off") => false,
                Some("round_robin") => true,
                Some(other) => anyhow::bail!("SWITCHBOARD_AUTO_ASSIGN is round_robin or off, not {other:?}"),
            },
            sync_api_keys: parse_api_keys(s.sync_api_keys.as_deref().unwrap_or_default())
                .map_err(|e| anyhow::anyhow!("SWITCHBOARD_SYNC_API_KEYS: {e}"))?,
            widget: WidgetConfig {
                sites: parse_widget_sites(s.widget_sites.as_deref().unwrap_or_default())
                    .map_err(|e| anyhow::anyhow!("SWITCHBOARD_WIDGET_SITES: {e}"))?,
                identity_secret: s.widget_identity_secret.filter(|t| !t.is_empty()),
                token_ttl: s
                    .widget_token_ttl_s
                    .map_or(WidgetConfig::default().token_ttl, |t| Duration::from_secs(t.max(1))),
                session_rate: s.widget_session_rate.unwrap_or(WidgetConfig::default().session_rate).max(1),
            },
            trusted_proxies: TrustedProxies::parse(s.trusted_proxies.as_deref().unwrap_or_default())
                .map_err(|e| anyhow::anyhow!("SWITCHBOARD_TRUSTED_PROXIES: {e}"))?,
            wa_webhook: WebhookConfig {
                verify_token: s.wa_verify_token.filter(|t| !t.is_empty()),
                app_secret: s.wa_app_secret.filter(|t| !t.is_empty()),
            },
            whatsapp: WhatsappConfig {
                access_token: s.wa_access_token.filter(|t| !t.is_empty()),
                phone_number_id: s.wa_phone_number_id.filter(|t| !t.is_empty()),
                graph_base: s
                    .wa_graph_base
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| WhatsappConfig::default().graph_base),
                rate: s.wa_rate.unwrap_or(80).max(1),
            },
        })
    }
}

impl Resolved {
    pub fn require_nats(&self) -> anyhow::Result<&str> {
        self.nats_url.as_deref().context("SWITCHBOARD_NATS_URL (or --nats-url) is required in scale-out mode")
    }

    /// How this process uses NATS.
    pub fn bus_options(&self) -> switchboard_bus::NatsOptions {
        switchboard_bus::NatsOptions { replicas: self.nats_replicas, lease: self.lease, ..Default::default() }
    }

    /// A cluster's bus for a tool that only looks at it (`status`, `tail`):
    /// it declares nothing, so other settings than the nodes' change nothing.
    pub async fn observer_bus(&self, tool: &str) -> anyhow::Result<std::sync::Arc<dyn switchboard_bus::Bus>> {
        let options = switchboard_bus::NatsOptions { declare: false, ..self.bus_options() };
        Ok(switchboard_bus::connect(self.require_nats()?, &self.node_id(tool), options).await?)
    }

    /// The partitions of a cluster's commands.
    pub fn partitions(&self) -> switchboard_bus::Partitions {
        switchboard_bus::Partitions::new(self.partitions.unwrap_or(switchboard_bus::partition::DEFAULT_COUNT))
    }

    pub fn require_database(&self) -> anyhow::Result<&str> {
        self.database_url
            .as_deref()
            .context("SWITCHBOARD_DATABASE_URL (or --database-url) is required in scale-out mode")
    }

    pub fn require_secret(&self) -> anyhow::Result<String> {
        self.jwt_secret
            .clone()
            .context("SWITCHBOARD_JWT_SECRET (or --jwt-secret) is required in scale-out mode")
    }

    /// This process's bus name: as configured, else the role and a random suffix.
    pub fn node_id(&self, role: &str) -> String {
        self.node_id
            .clone()
            .unwrap_or_else(|| format!("{role}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let dir = std::env::temp_dir().join(format!("sb-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("switchboard.toml");
        std::fs::write(&file, "http_addr = \"127.0.0.1:9000\"\nmax_joins = 7\ncors_origins = \"https://a.example, https://b.example\"\n").unwrap();
        let flags = Settings { config: Some(file), max_joins: Some(3), ..Default::default() };
        let resolved = flags.resolve().unwrap();
        assert_eq!(resolved.http_addr.port(), 9000);
        assert_eq!(resolved.limits.max_joins, 3);
        assert_eq!(resolved.cors_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(resolved.limits.max_text_len, Limits::default().max_text_len);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("sb-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("switchboard.toml");
        std::fs::write(&file, "max_jions = 7\n").unwrap();
        let err = Settings { config: Some(file), ..Default::default() }.resolve().unwrap_err();
        assert!(format!("{err:#}").contains("max_jions"), "{err:#}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
