//! What the operator does in a Pipeline's warehouse: when it deletes the
//! topic, it also forgets the offsets the workers stored for it, so a topic
//! created again under the same name is read from its start, not from the
//! old topic's positions (records below them would be skipped).

use std::time::Duration;

use shopstream_common::pg::{DbError, DbSettings};
use shopstream_model::SchemaName;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum WarehouseError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("clearing the stored offsets of topic {topic} in {table} failed: {detail}")]
    Delete {
        topic: String,
        table: String,
        detail: String,
    },
    #[error("the warehouse did not answer within {0:?}")]
    Timeout(Duration),
}

/// Delete `group`'s stored offsets of `topic`; returns the partitions cleared.
/// A schema the workers never created has nothing to clear. Safe while
/// workers still run: their commits are fenced on the stored offset, so a
/// batch in flight finds no row to advance and is rolled back.
pub async fn forget_offsets(
    url: &str,
    ca_pem: Option<String>,
    schema: &SchemaName,
    group: &str,
    topic: &str,
    timeout: Duration,
) -> Result<u64, WarehouseError> {
    let db = DbSettings::parse_with_ca_pem(url, "shopstream-operator", ca_pem)?;
    let table = schema.table(shopstream_model::warehouse::INGEST_OFFSETS);
    let (group, topic) = (group.to_string(), topic.to_string());
    let work = tokio::task::spawn_blocking(move || -> Result<u64, WarehouseError> {
        let mut client = db.connect()?;
        let sql = format!("DELETE FROM {table} WHERE consumer_group = $1 AND topic = $2");
        match client.execute(&sql, &[&group, &topic]) {
            Ok(n) => Ok(n),
            Err(e) if nothing_there(&e) => Ok(0),
            Err(e) => Err(WarehouseError::Delete {
                topic,
                table,
                detail: shopstream_common::error::chain(&e),
            }),
        }
    });
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(WarehouseError::Delete {
            topic: String::new(),
            table: String::new(),
            detail: join.to_string(),
        }),
        Err(_) => Err(WarehouseError::Timeout(timeout)),
    }
}

/// No schema or no offsets table: no worker ever stored anything there.
fn nothing_there(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.code()
        .is_some_and(|c| *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME)
}
