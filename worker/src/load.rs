//! Loading one micro-batch in ONE transaction: dimension upserts, facts via
//! binary COPY into staging then `INSERT ... ON CONFLICT DO NOTHING`, dead
//! letters, and the fenced advance of every partition's next offset.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use thiserror::Error;

use crate::db::Db;
use crate::dims::DimCache;
use crate::transform::Batch;

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
    /// Fact rows already present (duplicates on the wire).
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

    let staged_sales = batch.sales.len() as u64;
    if staged_sales > 0 {
        let types = [
            Type::UUID,
            Type::INT4,
            Type::UUID,
            Type::UUID,
            Type::INT8,
            Type::INT8,
            Type::INT4,
            Type::INT2,
            Type::TEXT,
            Type::TEXT,
            Type::INT4,
            Type::NUMERIC,
            Type::NUMERIC,
            Type::NUMERIC,
            Type::NUMERIC,
            Type::BOOL,
            Type::TIMESTAMPTZ,
            Type::INT4,
            Type::INT8,
        ];
        let mut w = BinaryCopyInWriter::new(tx.copy_in(&stmts.copy_sales)?, &types);
        for s in &batch.sales {
            let customer_key = resolved.customer_keys[s.customer];
            let product_key = resolved.product_keys[s.product];
            let is_first_order = resolved.first_orders[s.customer].map(|f| f.1) == Some(s.order_id);
            let row: [&(dyn ToSql + Sync); 19] = [
                &s.order_id,
                &s.line_number,
                &s.event_id,
                &s.session_id,
                &customer_key,
                &product_key,
                &s.date_key,
                &s.time_key,
                &s.currency,
                &s.payment_method,
                &s.quantity,
                &s.unit_price,
                &s.discount_amount,
                &s.line_total,
                &s.net_amount,
                &is_first_order,
                &s.event_time,
                &s.partition,
                &s.offset,
            ];
            w.write(&row)?;
        }
        w.finish()?;
    }

    let staged_activity = batch.activity.len() as u64;
    if staged_activity > 0 {
        let types = [
            Type::UUID,
            Type::TEXT,
            Type::UUID,
            Type::INT8,
            Type::INT8,
            Type::INT4,
            Type::INT2,
            Type::INT4,
            Type::NUMERIC,
            Type::TIMESTAMPTZ,
            Type::INT4,
            Type::INT8,
        ];
        let mut w = BinaryCopyInWriter::new(tx.copy_in(&stmts.copy_activity)?, &types);
        for a in &batch.activity {
            let customer_key = resolved.customer_keys[a.customer];
            let product_key = resolved.product_keys[a.product];
            let event_type = a.event_type.as_str();
            let row: [&(dyn ToSql + Sync); 12] = [
                &a.event_id,
                &event_type,
                &a.session_id,
                &customer_key,
                &product_key,
                &a.date_key,
                &a.time_key,
                &a.quantity,
                &a.list_price,
                &a.event_time,
                &a.partition,
                &a.offset,
            ];
            w.write(&row)?;
        }
        w.finish()?;
    }
    let (sales_rows, activity_rows) = if staged_sales + staged_activity > 0 {
        let row = tx.query_one(&stmts.insert_facts, &[])?;
        (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64)
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

    let dead = &batch.dead_letters;
    let dead_letters = if dead.is_empty() {
        0
    } else {
        let partitions: Vec<i32> = dead.iter().map(|d| d.partition).collect();
        let offsets: Vec<i64> = dead.iter().map(|d| d.offset).collect();
        let keys: Vec<Option<&[u8]>> = dead.iter().map(|d| d.key.as_deref()).collect();
        let payloads: Vec<Option<&[u8]>> = dead.iter().map(|d| d.payload.as_deref()).collect();
        let kinds: Vec<&str> = dead.iter().map(|d| d.kind.as_str()).collect();
        let errors: Vec<&str> = dead.iter().map(|d| d.error.as_str()).collect();
        let times: Vec<Option<DateTime<Utc>>> = dead.iter().map(|d| d.kafka_timestamp).collect();
        tx.execute(
            &stmts.insert_dead_letters,
            &[
                &stream.topic,
                &partitions,
                &offsets,
                &keys,
                &payloads,
                &kinds,
                &errors,
                &times,
            ],
        )?
    };

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
        &stmts.advance_offsets,
        &[
            &stream.group,
            &stream.topic,
            &stream.owner,
            &partitions,
            &starts,
            &nexts,
        ],
    )?;
    if advanced != partitions.len() as u64 {
        // Dropping `tx` rolls back.
        return Err(LoadError::Fenced { partitions });
    }
    tx.commit()?;
    cache.commit(resolved.pending);
    Ok(Loaded {
        sales_rows,
        activity_rows,
        duplicates: (staged_sales - sales_rows) + (staged_activity - activity_rows),
        dead_letters,
        upserted_customers: resolved.upserted_customers,
        upserted_products: resolved.upserted_products,
        committed_at: Utc::now(),
    })
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
