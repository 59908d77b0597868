//! Loading one micro-batch in ONE transaction: dimension upserts, facts via
//! binary COPY into staging then `INSERT ... ON CONFLICT DO NOTHING`, dead
//! letters, and the fenced advance of every partition's next offset.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use postgres::{Statement, Transaction};
use thiserror::Error;
use uuid::Uuid;

use crate::copy_layout;
use crate::db::Db;
use crate::dims::DimCache;
use crate::slices::{self, Inserted};
use crate::transform::{Batch, DeadLetter};

/// Identifies the stream whose offsets this worker advances.
#[derive(Debug, Clone)]
pub struct Stream {
    pub group: String,
    pub topic: String,
    /// Written to `ingest_offsets.owner` for operators reading the table.
    pub owner: String,
}

#[derive(Debug, Error)]
pub enum LoadError {
    /// Another worker moved these partitions' offsets: this worker lost them
    /// (a rebalance) or is out of date. Nothing was committed.
    #[error(
        "offsets of partitions {partitions:?} moved under this worker (partition reassigned); batch discarded"
    )]
    Fenced { partitions: Vec<i32> },
    #[error("loading the batch failed: {0}")]
    Db(#[from] postgres::Error),
}

#[derive(Debug)]
pub struct Loaded {
    pub sales_rows: u64,
    pub activity_rows: u64,
    /// Order status events that were new.
    pub order_updates: u64,
    /// Fact rows and status events already present (duplicates on the wire).
    pub duplicates: u64,
    pub dead_letters: u64,
    pub upserted_customers: usize,
    pub upserted_products: usize,
    pub committed_at: DateTime<Utc>,
}

impl Loaded {
    /// Add the figures of a later part of the same batch.
    pub fn absorb(&mut self, later: Loaded) {
        self.sales_rows += later.sales_rows;
        self.activity_rows += later.activity_rows;
        self.order_updates += later.order_updates;
        self.duplicates += later.duplicates;
        self.dead_letters += later.dead_letters;
        self.upserted_customers += later.upserted_customers;
        self.upserted_products += later.upserted_products;
        self.committed_at = later.committed_at;
    }
}

/// Load `batch`. `expected` holds each partition's stored next offset as this
/// worker knows it; the batch commits only if the warehouse still agrees.
pub fn load_batch(
    db: &mut Db,
    cache: &mut DimCache,
    stream: &Stream,
    batch: &Batch,
    expected: &BTreeMap<i32, i64>,
) -> Result<Loaded, LoadError> {
    let stmts = &db.stmts;
    let mut tx = db.client.transaction()?;
    let resolved = cache.resolve(&mut tx, stmts, batch)?;

    let (staged_sales, staged_activity) = copy_layout::stage_facts(
        &mut tx,
        &stmts.copy_sales,
        &stmts.copy_activity,
        &batch.sales,
        &batch.activity,
        &resolved,
    )?;
    let (sales_rows, activity_rows) = if staged_sales + staged_activity > 0 {
        let row = tx.query_one(
            &stmts.insert_facts,
            &[&(staged_sales as i64), &(staged_activity as i64)],
        )?;
        let (sales_rows, activity_rows) = (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64);
        let sales_keys = row
            .get::<_, Option<Vec<Uuid>>>(2)
            .zip(row.get::<_, Option<Vec<i32>>>(3))
            .map(|(orders, lines)| orders.into_iter().zip(lines));
        let inserted_sales = Inserted::from_insert(sales_rows, sales_keys);
        let inserted_activity = Inserted::from_insert(activity_rows, row.get::<_, Option<Vec<Uuid>>>(4));
        let rows = slices::slices(batch, inserted_sales, inserted_activity);
        slices::queue(&mut tx, &stmts.copy_slices, &rows)?;
        (sales_rows, activity_rows)
    } else {
        (0, 0)
    };
    // Customers whose first order this batch may have moved earlier.
    let buyers: Vec<i64> = batch
        .customers
        .iter()
        .zip(&resolved.customer_keys)
        .filter(|(c, _)| c.first_order.is_some())
        .map(|(_, key)| *key)
        .collect();
    if !buyers.is_empty() {
        tx.execute(&stmts.unflag_first_orders, &[&buyers])?;
    }
    let order_updates = crate::orders::apply(&mut tx, &db.orders, batch)?;

    let dead_letters = insert_dead_letters(
        &mut tx,
        &stmts.insert_dead_letters,
        &stream.topic,
        &batch.dead_letters,
    )?;
    if !advance(&mut tx, &stmts.advance_offsets, stream, batch, expected)? {
        // Dropping `tx` rolls back.
        return Err(LoadError::Fenced {
            partitions: batch.offsets.keys().copied().collect(),
        });
    }
    tx.commit()?;
    cache.commit(resolved.pending);
    Ok(Loaded {
        sales_rows,
        activity_rows,
        order_updates,
        duplicates: (staged_sales - sales_rows)
            + (staged_activity - activity_rows)
            + (batch.order_updates.len() as u64 - order_updates),
        dead_letters,
        upserted_customers: resolved.upserted_customers,
        upserted_products: resolved.upserted_products,
        committed_at: Utc::now(),
    })
}

/// The batch's dead letters; returns how many were new.
fn insert_dead_letters(
    tx: &mut Transaction<'_>,
    insert: &Statement,
    topic: &str,
    dead: &[DeadLetter],
) -> Result<u64, postgres::Error> {
    if dead.is_empty() {
        return Ok(0);
    }
    let partitions: Vec<i32> = dead.iter().map(|d| d.partition).collect();
    let offsets: Vec<i64> = dead.iter().map(|d| d.offset).collect();
    let keys: Vec<Option<&[u8]>> = dead.iter().map(|d| d.key.as_deref()).collect();
    let payloads: Vec<Option<&[u8]>> = dead.iter().map(|d| d.payload.as_deref()).collect();
    let kinds: Vec<&str> = dead.iter().map(|d| d.kind.as_str()).collect();
    let errors: Vec<&str> = dead.iter().map(|d| d.error.as_str()).collect();
    let times: Vec<Option<DateTime<Utc>>> = dead.iter().map(|d| d.kafka_timestamp).collect();
    tx.execute(
        insert,
        &[
            &topic,
            &partitions,
            &offsets,
            &keys,
            &payloads,
            &kinds,
            &errors,
            &times,
        ],
    )
}

/// The fenced advance of every partition of the batch to its next offset:
/// false if any of them had moved from where this worker expected it.
fn advance(
    tx: &mut Transaction<'_>,
    advance_offsets: &Statement,
    stream: &Stream,
    batch: &Batch,
    expected: &BTreeMap<i32, i64>,
) -> Result<bool, postgres::Error> {
    let mut partitions = Vec::with_capacity(batch.offsets.len());
    let mut starts = Vec::with_capacity(batch.offsets.len());
    let mut nexts = Vec::with_capacity(batch.offsets.len());
    for (p, range) in &batch.offsets {
        partitions.push(*p);
        // A partition the worker holds always has a known position.
        starts.push(expected.get(p).copied().unwrap_or(-1));
        nexts.push(range.next());
    }
    let advanced = tx.execute(
        advance_offsets,
        &[
            &stream.group,
            &stream.topic,
            &stream.owner,
            &partitions,
            &starts,
            &nexts,
        ],
    )?;
    Ok(advanced == partitions.len() as u64)
}

/// Stored next offsets of `partitions`, creating rows (at 0) for new ones.
pub fn stored_positions(
    db: &mut Db,
    stream: &Stream,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>, postgres::Error> {
    let stmts = &db.stmts;
    let mut tx = db.client.transaction()?;
    tx.execute(
        &stmts.ensure_offsets,
        &[&stream.group, &stream.topic, &partitions],
    )?;
    let rows = tx.query(
        &stmts.select_offsets,
        &[&stream.group, &stream.topic, &partitions],
    )?;
    tx.commit()?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Move a partition's stored offset from `from` to `to` (the topic was
/// recreated under the same name); false if another worker moved it first.
pub fn reset_position(
    db: &mut Db,
    stream: &Stream,
    partition: i32,
    from: i64,
    to: i64,
) -> Result<bool, postgres::Error> {
    let n = db.client.execute(
        &db.stmts.reset_offset,
        &[
            &stream.group,
            &stream.topic,
            &partition,
            &from,
            &to,
            &stream.owner,
        ],
    )?;
    Ok(n == 1)
}
