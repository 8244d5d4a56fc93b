//! `switchboard migrate`: applies the PostgreSQL migrations and exits (edges
//! and workers also apply them at start).

use super::settings::Resolved;

pub async fn run(settings: Resolved) -> anyhow::Result<()> {
    switchboard_store::open(settings.require_database()?).await?;
    println!("database migrated");
    Ok(())
}
