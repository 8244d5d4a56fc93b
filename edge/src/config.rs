//! What an edge node is told at start; the binary fills it from flags,
//! environment and the TOML file.

use std::collections::HashMap;
use std::time::Duration;

pub use crate::clients::TrustedProxies;

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Names this node on the bus (its reply subjects).
    pub node_id: String,
    pub jwt_secret: String,
    /// Browser origins allowed by CORS; empty allows none.
    pub cors_origins: Vec<String>,
    pub limits: Limits,
    /// Point-of-sale sync clients' API keys, each naming its tenant.
    pub sync_api_keys: SyncApiKeys,
    /// WhatsApp Cloud API webhooks (verify token, app secret).
    pub whatsapp: WebhookConfig,
    /// How commands are partitioned: the workers' count.
    pub partitions: switchboard_bus::Partitions,
    /// Visitor sessions for the widget on public sites (§12).
    pub widget: WidgetConfig,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
}

/// What visitor sessions need: the sites, the identity secret, the limits.
#[derive(Debug, Clone)]
pub struct WidgetConfig {
    pub sites: WidgetSites,
    /// Signs `user_hash` for signed-in users; unset: no `user_id` is believed.
    pub identity_secret: Option<String>,
    /// Life of a visitor token.
    pub token_ttl: Duration,
    /// Session requests per minute per client address.
    pub session_rate: u32,
}

impl Default for WidgetConfig {
    fn default() -> Self {
        Self {
            sites: WidgetSites::default(),
            identity_secret: None,
            token_ttl: Duration::from_secs(3600),
            session_rate: 10,
        }
    }
}

/// Site keys, each with the page origins that may use it.
#[derive(Debug, Clone, Default)]
pub struct WidgetSites(HashMap<String, Vec<String>>);

/// The origin that stands for any.
const ANY_ORIGIN: &str = "*";

impl WidgetSites {
    pub fn insert(&mut self, key: &str, origin: &str) {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        let origins = self.0.entry(key.to_owned()).or_default();
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The origins a key allows; `None` for a key this server does not have.
    pub fn origins(&self, key: &str) -> Option<&[String]> {
        self.0.get(key).map(Vec::as_slice)
    }

    /// Whether a page at `origin` (the browser's `Origin`; none from a
    /// non-browser client) may open sessions with `key`, which exists.
    pub fn allows(&self, key: &str, origin: Option<&str>) -> bool {
        self.origins(key).is_some_and(|origins| {
            origins
                .iter()
                .any(|o| o == ANY_ORIGIN || origin.is_some_and(|origin| o.eq_ignore_ascii_case(origin)))
        })
    }

    /// Whether any site key allows `origin`: the widget's cross-origin reads.
    pub fn allow_anywhere(&self, origin: &str) -> bool {
        self.0.values().flatten().any(|o| o == ANY_ORIGIN || o.eq_ignore_ascii_case(origin))
    }

    /// Every key with its origins, for a startup line.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.0.iter().map(|(k, o)| (k.as_str(), o.as_slice()))
    }
}

/// `site_key=origin` pairs, comma-separated; a key may repeat.
pub fn parse_widget_sites(text: &str) -> Result<WidgetSites, String> {
    let mut sites = WidgetSites::default();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((key, origin)) if is_site_key(key.trim()) && is_origin(origin.trim()) => {
                sites.insert(key.trim(), origin.trim())
            }
            _ => {
                return Err(format!(
                    "{pair:?} is not site_key=origin (an origin is scheme://host[:port] or *)"
                ));
            }
        }
    }
    Ok(sites)
}

fn is_site_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 128 && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn is_origin(origin: &str) -> bool {
    origin == ANY_ORIGIN
        || origin.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "http" | "https")
                && !rest.trim_end_matches('/').is_empty()
                && !rest.trim_end_matches('/').contains(['/', '?', '#', ' ', '*'])
        })
}

/// What the WhatsApp webhook needs to know; both unset: every request is refused.
#[derive(Debug, Clone, Default)]
pub struct WebhookConfig {
    /// Echoed back by Meta in the verification handshake.
    pub verify_token: Option<String>,
    /// The app secret that signs every delivery.
    pub app_secret: Option<String>,
}

/// API keys of sync clients, each belonging to one tenant.
#[derive(Clone, Default)]
pub struct SyncApiKeys(HashMap<String, String>);

impl SyncApiKeys {
    /// The tenant a key belongs to.
    pub fn tenant(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn insert(&mut self, tenant: &str, key: &str) {
        self.0.insert(key.to_owned(), tenant.to_owned());
    }
}

impl std::fmt::Debug for SyncApiKeys {
    /// Tenants only: keys are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.values()).finish()
    }
}

/// `tenant=key` pairs, comma-separated.
pub fn parse_api_keys(text: &str) -> Result<SyncApiKeys, String> {
    let mut keys = SyncApiKeys::default();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((tenant, key)) if !tenant.trim().is_empty() && !key.trim().is_empty() => {
                keys.insert(tenant.trim(), key.trim())
            }
            _ => return Err(format!("{pair:?} is not tenant=key")),
        }
    }
    Ok(keys)
}

/// Everything a client can make the edge hold is bounded.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest Socket.IO/HTTP payload, in bytes.
    pub max_payload: usize,
    /// Longest message text, in characters.
    pub max_text_len: usize,
    /// Conversations one socket may be joined to at once.
    pub max_joins: usize,
    /// `send_message` per second per connection (also the burst).
    pub publish_rate: u32,
    /// Typing events per second per connection (also the burst).
    pub typing_rate: u32,
    /// A `typing_start` with no stop ends by itself after this long.
    pub typing_ttl: Duration,
    /// Packets queued for one socket before it counts as not reading and is
    /// disconnected.
    pub outbound_buffer: usize,
    /// Messages in a join's page and in one recovery answer.
    pub history_page: u32,
    pub max_recovery: u32,
    /// How long an edge waits for a worker to answer a command.
    pub command_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload: 1 << 20,
            max_text_len: 4096,
            max_joins: 100,
            publish_rate: 20,
            typing_rate: 10,
            typing_ttl: Duration::from_secs(5),
            outbound_buffer: 256,
            history_page: 50,
            max_recovery: 1000,
            command_timeout: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_tenant_key_pairs() {
        let keys = parse_api_keys(" store-1=k1, store-2 = k2 ,,").unwrap();
        assert_eq!(keys.tenant("k1"), Some("store-1"));
        assert_eq!(keys.tenant("k2"), Some("store-2"));
        assert_eq!(keys.tenant("store-1"), None);
        assert!(!format!("{keys:?}").contains("k1"));
        assert!(parse_api_keys("").unwrap().tenant("").is_none());
        assert!(parse_api_keys("store-1").is_err());
        assert!(parse_api_keys("=k1").is_err());
    }

    #[test]
    fn sites_are_key_origin_pairs_and_a_key_may_repeat() {
        let sites =
            parse_widget_sites("shop=https://Shop.example/, shop=http://localhost:5000,any=*").unwrap();
        assert!(sites.allows("shop", Some("https://shop.example")));
        assert!(sites.allows("shop", Some("http://localhost:5000")));
        assert!(!sites.allows("shop", Some("https://evil.example")));
        assert!(!sites.allows("shop", None));
        assert!(sites.allows("any", None) && sites.allows("any", Some("https://evil.example")));
        assert!(!sites.allows("nope", Some("https://shop.example")));
        assert!(sites.allow_anywhere("https://evil.example"));
        for bad in [
            "shop",
            "shop=",
            "=https://a.example",
            "shop=ftp://a.example",
            "shop=https://a.example/path",
            "sh op=https://a.example",
            "shop=https://*.example",
        ] {
            assert!(parse_widget_sites(bad).is_err(), "{bad}");
        }
    }
}
