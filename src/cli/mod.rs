//! The command line: one file per subcommand, and the settings every mode reads.
//!
//! - [`dev`]: everything in one process, on the in-process bus and SQLite.
//! - [`edge`], [`worker`]: the processes of a scale-out cluster (NATS, PostgreSQL).
//! - [`migrate`]: the PostgreSQL schema. [`tail`]: the bus, as JSON lines.
//! - [`token`]: mints a token for a user, bot or service.
//! - [`settings`]: flags, `SWITCHBOARD_*` environment and the TOML file, merged;
//!   [`serve`]: serving and draining an edge.

mod dev;
mod edge;
mod migrate;
mod serve;
mod settings;
mod status;
mod tail;
mod token;
mod worker;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "switchboard", version, about = "Real-time messaging backbone for customer-support chat")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process: edge and workers, in-process bus, SQLite.
    Dev(settings::Settings),
    /// An edge node: sockets and HTTP, on NATS and PostgreSQL.
    Edge(settings::Settings),
    /// A worker of a scale-out cluster.
    Worker {
        #[command(subcommand)]
        kind: worker::WorkerKind,
    },
    /// Apply the PostgreSQL migrations and exit.
    Migrate(settings::Settings),
    /// Print what flows on the bus as JSON lines.
    Tail(tail::TailArgs),
    /// The cluster at a glance: edges, workers, partitions and their backlog.
    Status(status::StatusArgs),
    /// Print a signed token (HS256 with the configured secret).
    Token(token::TokenArgs),
}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match std::env::var("SWITCHBOARD_LOG_FORMAT").as_deref() {
        // One JSON object per line, for log shippers.
        Ok("json") => logs.json().with_current_span(false).init(),
        Ok("" | "text") | Err(_) => {
            // Colour only for a terminal: log files get plain text.
            logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init()
        }
        Ok(other) => anyhow::bail!("SWITCHBOARD_LOG_FORMAT is text or json, not {other:?}"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Dev(settings) => runtime.block_on(dev::run(settings.resolve()?)),
        Command::Edge(settings) => runtime.block_on(edge::run(settings.resolve()?)),
        Command::Worker { kind } => runtime.block_on(worker::run(kind)),
        Command::Migrate(settings) => runtime.block_on(migrate::run(settings.resolve()?)),
        Command::Tail(args) => runtime.block_on(tail::run(args)),
        Command::Status(args) => runtime.block_on(status::run(args)),
        Command::Token(args) => token::run(args),
    }
}
