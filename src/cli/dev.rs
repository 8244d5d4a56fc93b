//! `switchboard dev`: the embedded default. One process runs an edge and every
//! kind of worker (persist, sync, whatsapp) on the in-process bus, with an
//! SQLite file; nothing to install.

use anyhow::Context;
use switchboard_edge::Edge;
use switchboard_edge::auth::{Claims, mint};
use switchboard_workers::registry::{Deps, Kind};

use super::serve::{bind, edge_config, metrics_recorder, serve};
use super::settings::Resolved;
use super::token::expires_in;

pub async fn run(mut settings: Resolved) -> anyhow::Result<()> {
    // One worker of each kind owns everything: more partitions would only
    // add pull loops.
    settings.partitions.get_or_insert(1);
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
    let (secret, generated) = match settings.jwt_secret.clone() {
        Some(secret) => (secret, false),
        None => (dev_secret(&settings)?, true),
    };
    let metrics = metrics_recorder(
        "dev",
        &[switchboard_edge::telemetry::SERIES, switchboard_workers::telemetry::SERIES],
    )?;
    let database = format!("sqlite:{}", settings.data_dir.join("switchboard.db").display());
    let store = switchboard_store::open(&database).await?;
    // One bus for every part of the process.
    let bus = switchboard_bus::connect("memory:", "dev", settings.bus_options()).await?;
    let deps = Deps {
        bus: bus.clone(),
        store: store.clone(),
        node: "dev-worker".into(),
        partitions: settings.partitions(),
        bot_reply_ttl: settings.bot_reply_ttl,
        auto_assign: settings.auto_assign,
        // Harmless without WhatsApp settings: nothing arrives, and sends fail as not configured.
        whatsapp: settings.whatsapp.clone(),
    };
    for kind in Kind::ALL {
        let deps = deps.clone();
        tokio::spawn(async move {
            if let Err(e) = kind.run(deps, std::future::pending()).await {
                tracing::error!(error = %e, worker = kind.name(), "worker stopped");
            }
        });
    }

    let (listener, url) = bind(&settings).await?;
    if settings.widget.sites.is_empty() {
        for origin in own_origins(&url) {
            settings.widget.sites.insert(DEMO_SITE_KEY, &origin);
        }
    }
    let edge = Edge::start(edge_config(&settings, "dev", secret.clone()), bus, store, metrics).await?;
    if generated {
        print_welcome(&url, &secret);
    }
    print_pages(&url, &settings, &secret);
    println!("switchboard dev ready on {url}");
    serve(edge, listener, &settings).await
}

/// The site key `dev` gives its own pages when no site is configured.
const DEMO_SITE_KEY: &str = "demo";

/// The origins a browser may name this process by: as bound, and as
/// `localhost` and `127.0.0.1` with the same port.
fn own_origins(url: &str) -> Vec<String> {
    let port = url.rsplit(':').next().unwrap_or_default();
    vec![url.to_owned(), format!("http://localhost:{port}"), format!("http://127.0.0.1:{port}")]
}

/// The pages to open: the demo page with a site key that works from this
/// process's own origin, and the agent inbox signed in as the demo agent.
fn print_pages(url: &str, settings: &Resolved, secret: &str) {
    let own = own_origins(url);
    let usable =
        settings.widget.sites.iter().find(|(_, origins)| origins.iter().any(|o| o == "*" || own.contains(o)));
    let agent = demo_token(secret, "demo-agent", "agent", "Demo Agent", None);
    println!("\nOpen in a browser:\n  agent inbox: {url}/demo/agent?token={agent}");
    match usable {
        Some((key, _)) => println!(
            "  demo page:   {url}/demo/?site_key={key}\n\nWidget site key for this origin: {key}\n  \
             embed: <script src=\"{url}/widget.js\" data-site-key=\"{key}\"></script>\n"
        ),
        None => println!(
            "  demo page:   {url}/demo/?token=<a customer token>\n\n\
             No widget site key allows {url}: see SWITCHBOARD_WIDGET_SITES\n"
        ),
    }
}

/// A token for the demo's users, valid 30 days.
fn demo_token(secret: &str, sub: &str, role: &str, name: &str, conversations: Option<Vec<String>>) -> String {
    mint(
        secret,
        &Claims {
            sub: sub.into(),
            role: role.into(),
            name: Some(name.into()),
            phone: (role == "customer").then(|| "5215550001".into()),
            email: None,
            conversations,
            site: None,
            jti: None,
            exp: expires_in(30 * 24 * 3600),
        },
    )
}

/// A secret kept in the data directory, so demo tokens survive restarts.
fn dev_secret(settings: &Resolved) -> anyhow::Result<String> {
    let path = settings.data_dir.join("dev-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        return Ok(secret.trim().to_owned());
    }
    let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

fn print_welcome(url: &str, secret: &str) {
    let token =
        |sub: &str, role: &str, name: &str, conversations| demo_token(secret, sub, role, name, conversations);
    let customer = token("demo-customer", "customer", "Demo Customer", Some(vec!["demo".into()]));
    let agent = token("demo-agent", "agent", "Demo Agent", None);
    let service = token("demo-service", "service", "Demo Backend", None);
    println!(
        "\nNo SWITCHBOARD_JWT_SECRET was set, so this one was made (kept in the data directory):\n\
         \n  SWITCHBOARD_JWT_SECRET={secret}\n\
         \nDemo tokens (valid 30 days):\n\
         \n  customer (may join conversation \"demo\"): {customer}\
         \n  agent:    {agent}\
         \n  service:  {service}\n\
         \nTry it with socket.io-client (npm i socket.io-client):\n\
         \n  const {{ io }} = require('socket.io-client');\
         \n  const socket = io('{url}', {{ auth: {{ token: '{customer}' }} }});\
         \n  socket.on('message:new', (m) => console.log(m.offset, m.sender.name, m.text));\
         \n  socket.emit('join_conversation', {{ conversation_id: 'demo' }}, (ack) => {{\
         \n    socket.emit('send_message', {{ conversation_id: 'demo', text: 'Hello!' }}, console.log);\
         \n  }});\n\
         \nOr over HTTP:\n\
         \n  curl -H 'Authorization: Bearer {service}' {url}/api/v1/conversations\n"
    );
}
