//! The shared store behaviours against PostgreSQL: each test gets a database of
//! its own on the server named by `SWITCHBOARD_TEST_DATABASE_URL` (a URL of a
//! role that may create databases), seen through two stores as two processes
//! would. `deploy/lib/postgres.sh` starts such a server.

#[macro_use]
mod common;

use std::future::Future;
use std::sync::Arc;

use common::{Db, run_then};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};
use switchboard_store::PgStore;
use uuid::Uuid;

const URL_VAR: &str = "SWITCHBOARD_TEST_DATABASE_URL";

fn admin_options() -> PgConnectOptions {
    let url = std::env::var(URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{URL_VAR} is not set: the PostgreSQL store tests need a server \
             (`source deploy/lib/postgres.sh && pg_start` starts one and sets it)"
        )
    });
    url.parse().unwrap_or_else(|e| panic!("{URL_VAR} is not a PostgreSQL URL: {e}"))
}

async fn execute(admin: &mut PgConnection, sql: String) {
    sqlx::query(AssertSqlSafe(sql)).execute(admin).await.unwrap();
}

async fn run<F: Future<Output = ()> + Send + 'static>(behaviour: impl FnOnce(Db) -> F) {
    let admin_options = admin_options();
    let mut admin = admin_options.connect().await.unwrap_or_else(|e| panic!("cannot reach {URL_VAR}: {e}"));
    let name = format!("sb_test_{}", Uuid::new_v4().simple());
    execute(&mut admin, format!("CREATE DATABASE {name}")).await;
    let options = admin_options.database(&name);
    // At once, as processes starting together would: the migrations must not collide.
    let (store, other) =
        tokio::try_join!(PgStore::connect_with(options.clone()), PgStore::connect_with(options)).unwrap();
    let db = Db { store: Arc::new(store), other: Arc::new(other) };
    run_then(behaviour(db), async {
        // FORCE: tasks a failed behaviour left behind may still hold connections.
        execute(&mut admin, format!("DROP DATABASE {name} WITH (FORCE)")).await;
        admin.close().await.unwrap();
    })
    .await;
}

behaviour_tests!(run);
