//! The command line: one file per subcommand, and the settings every mode reads.
//!
//! - [`dev`]: everything in one process, on the in-process bus and SQLite.
//! - [`token`]: mints a token for a user, bot or service.
//! - [`settings`]: flags, `SWITCHBOARD_*` environment and the TOML file, merged.

mod dev;
mod settings;
mod token;

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
    /// Print a signed token (HS256 with the configured secret).
    Token(token::TokenArgs),
}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Dev(settings) => runtime.block_on(dev::run(settings.resolve()?)),
        Command::Token(args) => token::run(args),
    }
}
