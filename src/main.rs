//! `switchboard`: one binary, a subcommand per role (see `cli`).

mod cli;

fn main() -> anyhow::Result<()> {
    cli::run()
}
