//! Versioned schema migrations, embedded in the binary.
//!
//! Many workers start at once, so migrations run in one transaction under a
//! PostgreSQL advisory lock keyed by the schema: the first worker applies
//! them, the others wait and then find nothing to do. Each applied version is
//! recorded with a checksum; editing a released migration is refused.

use postgres::GenericClient;
use shopstream_common::hash::fnv1a64;
use shopstream_model::SchemaName;
use thiserror::Error;

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "star_schema",
        sql: include_str!("../migrations/0001_star_schema.sql"),
    },
    Migration {
        version: 2,
        name: "reporting_views",
        sql: include_str!("../migrations/0002_reporting_views.sql"),
    },
    Migration {
        version: 3,
        name: "rollups",
        sql: include_str!("../migrations/0003_rollups.sql"),
    },
    Migration {
        version: 4,
        name: "unbounded_rollup_sums",
        sql: include_str!("../migrations/0004_unbounded_rollup_sums.sql"),
    },
    Migration {
        version: 5,
        name: "exact_first_orders",
        sql: include_str!("../migrations/0005_exact_first_orders.sql"),
    },
    Migration {
        version: 6,
        name: "shoppers",
        sql: include_str!("../migrations/0006_shoppers.sql"),
    },
    Migration {
        version: 7,
        name: "shopper_views",
        sql: include_str!("../migrations/0007_shopper_views.sql"),
    },
    Migration {
        version: 8,
        name: "order_lifecycle",
        sql: include_str!("../migrations/0008_order_lifecycle.sql"),
    },
    Migration {
        version: 9,
        name: "customer_months",
        sql: include_str!("../migrations/0009_customer_months.sql"),
    },
    Migration {
        version: 10,
        name: "cart_sessions",
        sql: include_str!("../migrations/0010_cart_sessions.sql"),
    },
    Migration {
        version: 11,
        name: "filter_slices",
        sql: include_str!("../migrations/0011_filter_slices.sql"),
    },
    Migration {
        version: 12,
        name: "reader_grants",
        sql: include_str!("../migrations/0012_reader_grants.sql"),
    },
    Migration {
        version: 13,
        name: "loader_grants",
        sql: include_str!("../migrations/0013_loader_grants.sql"),
    },
];

/// Advisory lock class for Shopstream migrations (`pg_advisory_xact_lock(class, hashtext(schema))`).
const LOCK_CLASS: i32 = 0x5348_4f50; // "SHOP"

#[derive(Debug, Error)]
pub enum MigrateError {
    #[error("migrating schema {schema} failed at {step}: {source}")]
    Sql {
        schema: String,
        step: String,
        source: postgres::Error,
    },
    #[error(
        "migration {version} was changed after it was applied to schema {schema} (checksum {found}, expected {expected}); add a new migration instead"
    )]
    Checksum {
        schema: String,
        version: i32,
        found: String,
        expected: String,
    },
    #[error(
        "this role may not migrate schema {schema} ({step}); run `shopstream-worker --migrate-only` with the schema owner's credentials (README \"Security\"): {source}"
    )]
    NotPermitted {
        schema: String,
        step: String,
        source: postgres::Error,
    },
    #[error("schema {schema} has migration {version}, newer than this worker knows; upgrade the worker")]
    TooNew { schema: String, version: i32 },
}

impl Migration {
    fn render(&self, schema: &SchemaName) -> String {
        self.sql.replace("{schema}", &schema.quoted())
    }

    fn checksum(&self) -> String {
        format!("{:016x}", fnv1a64(self.sql.as_bytes()))
    }
}

/// Apply pending migrations; returns the versions applied by this call.
///
/// A schema that is already current is only read, so a role without DDL
/// rights (the loader, when a migrator role ran the migrations) starts as
/// well; one that needs a migration it may not run gets
/// [`MigrateError::NotPermitted`].
pub fn migrate(client: &mut impl GenericClient, schema: &SchemaName) -> Result<Vec<i32>, MigrateError> {
    let sql_err = |step: &str| {
        let schema = schema.clone();
        let step = step.to_string();
        move |source: postgres::Error| MigrateError::from_sql(&schema, step, source)
    };
    if let Some(applied) = applied(client, schema).map_err(sql_err("read applied migrations"))?
        && pending(schema, &applied)?.is_empty()
    {
        return Ok(Vec::new());
    }
    let mut tx = client.transaction().map_err(sql_err("begin"))?;
    lock(&mut tx, schema).map_err(sql_err("advisory lock"))?;
    // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
    // schema exists; a DBA may have made it for the migrator, so ask first.
    let exists: bool = tx
        .query_one("SELECT to_regnamespace($1) IS NOT NULL", &[&schema.quoted()])
        .map_err(sql_err("look up the schema"))?
        .get(0);
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {}", schema.quoted()))
            .map_err(sql_err("create schema"))?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {}.schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             checksum   text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
        schema.quoted()
    ))
    .map_err(sql_err("migrations table"))?;
    let applied = applied(&mut tx, schema)
        .map_err(sql_err("read applied migrations"))?
        .unwrap_or_default();
    let mut newly = Vec::new();
    for m in pending(schema, &applied)? {
        let step = format!("migration {} ({})", m.version, m.name);
        tx.batch_execute(&m.render(schema)).map_err(sql_err(&step))?;
        tx.execute(
            &format!(
                "INSERT INTO {}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                schema.quoted()
            ),
            &[&m.version, &m.name, &m.checksum()],
        )
        .map_err(sql_err(&step))?;
        newly.push(m.version);
    }
    tx.commit().map_err(sql_err("commit"))?;
    Ok(newly)
}

/// The applied versions and checksums; `None` when the schema has no
/// migrations table yet.
fn applied(
    client: &mut impl GenericClient,
    schema: &SchemaName,
) -> Result<Option<Vec<(i32, String)>>, postgres::Error> {
    let table = format!("{}.schema_migrations", schema.quoted());
    let present: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])?
        .get(0);
    if !present {
        return Ok(None);
    }
    let rows = client.query(
        &format!("SELECT version, checksum FROM {table} ORDER BY version"),
        &[],
    )?;
    Ok(Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
}

/// The migrations still to apply, after checking the applied ones are ours
/// and unchanged.
fn pending(schema: &SchemaName, applied: &[(i32, String)]) -> Result<Vec<&'static Migration>, MigrateError> {
    if let Some((version, _)) = applied
        .iter()
        .find(|(v, _)| !MIGRATIONS.iter().any(|m| m.version == *v))
    {
        return Err(MigrateError::TooNew {
            schema: schema.to_string(),
            version: *version,
        });
    }
    let mut todo = Vec::new();
    for m in MIGRATIONS {
        match applied.iter().find(|(v, _)| *v == m.version) {
            Some((_, found)) if *found != m.checksum() => {
                return Err(MigrateError::Checksum {
                    schema: schema.to_string(),
                    version: m.version,
                    found: found.clone(),
                    expected: m.checksum(),
                });
            }
            Some(_) => {}
            None => todo.push(m),
        }
    }
    Ok(todo)
}

/// Serialise everyone who changes the schema or its grants (migrations,
/// [`grant`]) until the transaction ends.
fn lock(tx: &mut postgres::Transaction<'_>, schema: &SchemaName) -> Result<(), postgres::Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_CLASS, &schema.as_str()],
    )
    .map(|_| ())
}

/// Give roles their rights on the schema (migrations 0012 and 0013); run by
/// the schema's owner after [`migrate`]. Under the migrations' advisory lock:
/// PostgreSQL fails concurrent GRANTs on the same object ("tuple concurrently
/// updated"), and every worker pod's init container grants at start.
pub fn grant(
    client: &mut impl GenericClient,
    schema: &SchemaName,
    grants: &[(String, Grant)],
) -> Result<(), MigrateError> {
    let sql_err = |step: String| move |source| MigrateError::from_sql(schema, step, source);
    let mut tx = client.transaction().map_err(sql_err("begin".into()))?;
    lock(&mut tx, schema).map_err(sql_err("advisory lock".into()))?;
    for (role, kind) in grants {
        let function = match kind {
            Grant::Loader => "grant_loader",
            Grant::Reader => "grant_reader",
        };
        tx.execute(
            &format!(
                "SELECT {}.{function}(quote_ident($1::text)::regrole)",
                schema.quoted()
            ),
            &[role],
        )
        .map_err(sql_err(format!("{function}({role})")))?;
    }
    tx.commit().map_err(sql_err("commit".into()))
}

/// Which rights [`grant`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Loader,
    Reader,
}

impl MigrateError {
    fn from_sql(schema: &SchemaName, step: String, source: postgres::Error) -> Self {
        let schema = schema.to_string();
        if source.code() == Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
            MigrateError::NotPermitted { schema, step, source }
        } else {
            MigrateError::Sql { schema, step, source }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing_and_sql_is_schema_qualified() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]));
        let schema = SchemaName::parse("order").unwrap();
        for m in MIGRATIONS {
            let sql = m.render(&schema);
            assert!(!sql.contains("{schema}"));
            // Every CREATE names the schema explicitly; nothing lands in `public`.
            for line in sql.lines().filter(|l| l.trim_start().starts_with("CREATE ")) {
                assert!(line.contains("\"order\"."), "unqualified: {line}");
            }
        }
    }
}
