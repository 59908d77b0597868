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
pub fn migrate(client: &mut impl GenericClient, schema: &SchemaName) -> Result<Vec<i32>, MigrateError> {
    let sql_err = |step: &str| {
        let schema = schema.to_string();
        let step = step.to_string();
        move |source| MigrateError::Sql { schema, step, source }
    };
    let mut tx = client.transaction().map_err(sql_err("begin"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_CLASS, &schema.as_str()],
    )
    .map_err(sql_err("advisory lock"))?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             checksum   text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
        s = schema.quoted()
    ))
    .map_err(sql_err("migrations table"))?;
    let applied: Vec<(i32, String)> = tx
        .query(
            &format!(
                "SELECT version, checksum FROM {}.schema_migrations ORDER BY version",
                schema.quoted()
            ),
            &[],
        )
        .map_err(sql_err("read applied migrations"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if let Some((version, _)) = applied
        .iter()
        .find(|(v, _)| !MIGRATIONS.iter().any(|m| m.version == *v))
    {
        return Err(MigrateError::TooNew {
            schema: schema.to_string(),
            version: *version,
        });
    }
    let mut newly = Vec::new();
    for m in MIGRATIONS {
        if let Some((_, found)) = applied.iter().find(|(v, _)| *v == m.version) {
            if *found != m.checksum() {
                return Err(MigrateError::Checksum {
                    schema: schema.to_string(),
                    version: m.version,
                    found: found.clone(),
                    expected: m.checksum(),
                });
            }
            continue;
        }
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
