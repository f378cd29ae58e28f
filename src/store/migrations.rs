//! Versioned schema migrations, embedded in the binary and applied at start-up.
//!
//! Each migration runs in its own transaction and is recorded with a checksum, so an
//! edited migration or a database written by a newer wearbridge is refused loudly
//! instead of being half-understood.

use sha2::{Digest, Sha256};
use sqlx::{PgPool, SqlitePool};

/// One schema step.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The SQLite migrations, in order.
pub(crate) const SQLITE: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("migrations/sqlite/0001_init.sql") },
    Migration { version: 2, name: "published", sql: include_str!("migrations/sqlite/0002_published.sql") },
    Migration { version: 3, name: "leases", sql: include_str!("migrations/sqlite/0003_leases.sql") },
    Migration { version: 4, name: "consents", sql: include_str!("migrations/sqlite/0004_consents.sql") },
    Migration {
        version: 5,
        name: "provider_is_data",
        sql: include_str!("migrations/sqlite/0005_provider_is_data.sql"),
    },
    Migration { version: 6, name: "series", sql: include_str!("migrations/sqlite/0006_series.sql") },
    Migration { version: 7, name: "people", sql: include_str!("migrations/sqlite/0007_people.sql") },
    Migration { version: 8, name: "push", sql: include_str!("migrations/sqlite/0008_push.sql") },
    Migration { version: 9, name: "scales", sql: include_str!("migrations/sqlite/0009_scales.sql") },
];

/// The PostgreSQL migrations: the same versions, in PostgreSQL's types.
pub(crate) const POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("migrations/postgres/0001_init.sql") },
    Migration { version: 2, name: "published", sql: include_str!("migrations/postgres/0002_published.sql") },
    Migration { version: 3, name: "leases", sql: include_str!("migrations/postgres/0003_leases.sql") },
    Migration { version: 4, name: "consents", sql: include_str!("migrations/postgres/0004_consents.sql") },
    Migration {
        version: 5,
        name: "provider_is_data",
        sql: include_str!("migrations/postgres/0005_provider_is_data.sql"),
    },
    Migration { version: 6, name: "series", sql: include_str!("migrations/postgres/0006_series.sql") },
    Migration { version: 7, name: "people", sql: include_str!("migrations/postgres/0007_people.sql") },
    Migration { version: 8, name: "push", sql: include_str!("migrations/postgres/0008_push.sql") },
    Migration { version: 9, name: "scales", sql: include_str!("migrations/postgres/0009_scales.sql") },
];

/// Advisory lock key that serialises migrations of workers starting together.
const PG_MIGRATION_LOCK: i64 = 0x7765_6172_6272_6467;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("migration {version} ({name}) differs from the one applied to this database")]
    Changed { version: i64, name: String },
    #[error("the database has schema version {found}, newer than this wearbridge knows ({known}); upgrade wearbridge")]
    TooNew { found: i64, known: i64 },
    #[error("migration {version} failed: {source}")]
    Failed { version: i64, source: sqlx::Error },
    #[error("migration {version} left {rows} rows whose foreign keys point nowhere; nothing was changed")]
    Dangling { version: i64, rows: usize },
    #[error("cannot read migration state: {0}")]
    State(#[from] sqlx::Error),
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// The migrations a database with `applied` (version → checksum) still needs, with their
/// checksums; refuses a changed migration or a database newer than this build.
fn plan<'m>(
    migrations: &'m [Migration],
    applied: &std::collections::BTreeMap<i64, String>,
) -> Result<Vec<(&'m Migration, String)>, MigrationError> {
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some((&found, _)) = applied.iter().next_back()
        && found > known
    {
        return Err(MigrationError::TooNew { found, known });
    }
    let mut todo = Vec::new();
    for m in migrations {
        let sum = checksum(m.sql);
        match applied.get(&m.version) {
            Some(existing) if *existing == sum => {}
            Some(_) => return Err(MigrationError::Changed { version: m.version, name: m.name.into() }),
            None => todo.push((m, sum)),
        }
    }
    Ok(todo)
}

/// Applies every migration the database behind the connection `$conn` lacks, each in a
/// transaction of its own; evaluates to the versions applied now. Written once for both
/// backends (`$create` is the bookkeeping table in the backend's types).
macro_rules! apply {
    ($conn:expr, $migrations:expr, $create:expr, $check:expr) => {{
        use sqlx::Connection;
        let conn = $conn;
        sqlx::raw_sql($create).execute(&mut *conn).await?;
        let applied = sqlx::query_as::<_, (i64, String)>("SELECT version, checksum FROM schema_migrations")
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
        let mut now_applied = Vec::new();
        for (m, sum) in plan($migrations, &applied)? {
            let failed = |source| MigrationError::Failed { version: m.version, source };
            let mut tx = conn.begin().await.map_err(failed)?;
            sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(failed)?;
            // Any row the migration left pointing nowhere fails it, before it commits.
            let dangling = sqlx::raw_sql($check).fetch_all(&mut *tx).await.map_err(failed)?;
            if !dangling.is_empty() {
                return Err(MigrationError::Dangling { version: m.version, rows: dangling.len() });
            }
            sqlx::query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
                .bind(m.version)
                .bind(m.name)
                .bind(&sum)
                .bind(crate::clock::Clock::system().now())
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            tracing::info!(version = m.version, name = m.name, "applied store migration");
            now_applied.push(m.version);
        }
        Ok::<Vec<i64>, MigrationError>(now_applied)
    }};
}

/// Applies every migration the SQLite database lacks. Returns the versions applied now.
///
/// Foreign keys are off while migrations run (SQLite's procedure for rebuilding a table:
/// with them on, dropping a parent table would cascade into its children), and each
/// migration is checked with `foreign_key_check` before it commits.
pub(crate) async fn run_sqlite(pool: &SqlitePool, migrations: &[Migration]) -> Result<Vec<i64>, MigrationError> {
    let mut conn = pool.acquire().await?;
    sqlx::raw_sql("PRAGMA foreign_keys = OFF").execute(&mut *conn).await?;
    let result = async {
        apply!(
            &mut *conn,
            migrations,
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    INTEGER PRIMARY KEY,
                name       TEXT NOT NULL,
                checksum   TEXT NOT NULL,
                applied_at TEXT NOT NULL
            )",
            "PRAGMA foreign_key_check"
        )
    }
    .await;
    let restored = sqlx::raw_sql("PRAGMA foreign_keys = ON").execute(&mut *conn).await;
    if restored.is_err() {
        // Never hand a connection without foreign keys back to the pool.
        conn.detach();
    }
    result
}

/// Applies every migration the PostgreSQL database lacks, holding an advisory lock so
/// that workers starting at the same time migrate one after the other.
pub(crate) async fn run_postgres(pool: &PgPool, migrations: &[Migration]) -> Result<Vec<i64>, MigrationError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)").bind(PG_MIGRATION_LOCK).execute(&mut *conn).await?;
    let result = apply_postgres(&mut conn, migrations).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)").bind(PG_MIGRATION_LOCK).execute(&mut *conn).await;
    let applied = result?;
    unlocked?;
    Ok(applied)
}

async fn apply_postgres(conn: &mut sqlx::PgConnection, migrations: &[Migration]) -> Result<Vec<i64>, MigrationError> {
    apply!(
        conn,
        migrations,
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    BIGINT PRIMARY KEY,
            name       TEXT NOT NULL,
            checksum   TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL
        )",
        "SELECT 1 WHERE false"
    )
}
