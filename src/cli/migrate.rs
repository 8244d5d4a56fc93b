//! `switchboard migrate`: applies the PostgreSQL migrations and exits (edges
//! and workers also apply them at start).

use switchboard_store::PgStore;

use super::settings::Resolved;

pub async fn run(settings: Resolved) -> anyhow::Result<()> {
    PgStore::connect(settings.require_database()?).await?;
    println!("database migrated");
    Ok(())
}
