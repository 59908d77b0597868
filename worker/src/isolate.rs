//! When the warehouse refuses a batch because of what is in it (a value out
//! of a column's range, a constraint a DBA added), retrying the same batch
//! fails forever and stops its partitions. Instead the batch is split in
//! halves until the record it fails on is alone; that record becomes a dead
//! letter carrying the database's error, and everything around it loads.
//! Each half is its own fenced transaction, so offsets still advance exactly
//! once, in order.

use std::collections::BTreeMap;

use postgres::error::SqlState;
use shopstream_model::ErrorKind;

use crate::db::Db;
use crate::dims::DimCache;
use crate::load::{LoadError, Loaded, Stream, load_batch};
use crate::metrics::Metrics;
use crate::transform::{Batch, DeadLetter, OwnedRecord};

/// Errors caused by the data rather than by the database's state: the same
/// rows would fail again. Anything else (lost connection, deadlock,
/// terminated backend, lock timeout, disk full) is retried as a whole.
pub fn caused_by_data(code: &SqlState) -> bool {
    let class = &code.code()[..2];
    // 22: data exception (numeric overflow, bad encoding, out of range);
    // 23: integrity constraint violation (CHECK, NOT NULL, foreign key);
    // 54: program limit exceeded (a value or row too large).
    matches!(class, "22" | "23" | "54")
}

/// The split point of a failing batch: records are in poll order, so every
/// prefix holds a prefix of each partition and offsets stay contiguous.
pub fn halves(records: &[OwnedRecord]) -> (&[OwnedRecord], &[OwnedRecord]) {
    records.split_at(records.len() / 2)
}

/// Load `batch` (made of `records`); if the warehouse rejects its data,
/// isolate the offending records as dead letters and load the rest.
pub fn load_isolating(
    db: &mut Db,
    cache: &mut DimCache,
    stream: &Stream,
    records: &[OwnedRecord],
    batch: &Batch,
    expected: &BTreeMap<i32, i64>,
    metrics: &Metrics,
) -> Result<Loaded, LoadError> {
    Isolator {
        db,
        cache,
        stream,
        metrics,
    }
    .attempt(records, batch, expected, true)
}

/// What every level of the split loads with.
struct Isolator<'a> {
    db: &'a mut Db,
    cache: &'a mut DimCache,
    stream: &'a Stream,
    metrics: &'a Metrics,
}

impl Isolator<'_> {
    fn load(&mut self, batch: &Batch, expected: &BTreeMap<i32, i64>) -> Result<Loaded, LoadError> {
        load_batch(self.db, self.cache, self.stream, batch, expected)
    }

    /// One load; on a data error, split (`whole`: the batch as polled, counted
    /// and logged once, not at every level of the split).
    fn attempt(
        &mut self,
        records: &[OwnedRecord],
        batch: &Batch,
        expected: &BTreeMap<i32, i64>,
        whole: bool,
    ) -> Result<Loaded, LoadError> {
        match self.load(batch, expected) {
            Err(LoadError::Db(e)) if e.code().is_some_and(caused_by_data) => {
                if whole {
                    self.metrics.isolations.inc();
                    tracing::warn!(error = %e, records = records.len(), "the warehouse rejected the batch's data; isolating the record it fails on");
                }
                self.split(records, expected)
            }
            other => other,
        }
    }

    fn split(&mut self, records: &[OwnedRecord], expected: &BTreeMap<i32, i64>) -> Result<Loaded, LoadError> {
        if let [record] = records {
            return self.load_rejected(record, expected);
        }
        let (left, right) = halves(records);
        let left_batch = Batch::from_records(left);
        let mut done = self.attempt(left, &left_batch, expected, false)?;
        // The right half builds on the offsets the left half stored.
        let mut after = expected.clone();
        for (p, range) in &left_batch.offsets {
            after.insert(*p, range.next());
        }
        let right_batch = Batch::from_records(right);
        let more = self.attempt(right, &right_batch, &after, false)?;
        done.absorb(more);
        Ok(done)
    }

    /// The one record the warehouse refuses: store it as a dead letter with
    /// the database's reason, and advance its partition past it.
    fn load_rejected(
        &mut self,
        record: &OwnedRecord,
        expected: &BTreeMap<i32, i64>,
    ) -> Result<Loaded, LoadError> {
        let batch = Batch::from_records([record]);
        let reason = match self.load(&batch, expected) {
            Err(LoadError::Db(e)) if e.code().is_some_and(caused_by_data) => describe(&e),
            other => return other, // it loads after all (the fault was elsewhere), or a real failure
        };
        tracing::warn!(partition = record.partition, offset = record.offset, %reason, "record rejected by the warehouse; stored as a dead letter");
        let dead = Batch::rejected(
            DeadLetter::new(record.raw(), ErrorKind::RejectedByWarehouse, &reason),
            record.partition,
            record.offset,
        );
        let loaded = self.load(&dead, expected)?;
        self.metrics
            .dead_letters
            .with_label_values(&[ErrorKind::RejectedByWarehouse.as_str()])
            .inc();
        Ok(loaded)
    }
}

/// "rejected by the warehouse: <message> (SQLSTATE <code>): <detail>".
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!(
                "rejected by the warehouse: {} (SQLSTATE {})",
                db.message(),
                db.code().code()
            );
            if let Some(detail) = db.detail() {
                text.push_str(": ");
                text.push_str(detail);
            }
            if let Some(c) = db.constraint() {
                text.push_str(&format!(" [constraint {c}]"));
            }
            text
        }
        None => format!("rejected by the warehouse: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_the_data_causes_are_isolated() {
        let cases = [
            (SqlState::NUMERIC_VALUE_OUT_OF_RANGE, true),
            (SqlState::CHARACTER_NOT_IN_REPERTOIRE, true),
            (SqlState::CHECK_VIOLATION, true),
            (SqlState::NOT_NULL_VIOLATION, true),
            (SqlState::PROGRAM_LIMIT_EXCEEDED, true),
            (SqlState::ADMIN_SHUTDOWN, false), // pg_terminate_backend
            (SqlState::T_R_DEADLOCK_DETECTED, false),
            (SqlState::T_R_SERIALIZATION_FAILURE, false),
            (SqlState::LOCK_NOT_AVAILABLE, false),
            (SqlState::QUERY_CANCELED, false), // statement_timeout
            (SqlState::DISK_FULL, false),
            (SqlState::UNDEFINED_TABLE, false), // schema dropped: not one record's fault
            (SqlState::CONNECTION_FAILURE, false),
        ];
        for (code, isolate) in cases {
            assert_eq!(caused_by_data(&code), isolate, "{}", code.code());
        }
    }

    #[test]
    fn halves_keep_each_partition_contiguous() {
        let rec = |partition, offset| OwnedRecord {
            partition,
            offset,
            key: None,
            payload: None,
            timestamp_ms: None,
        };
        // Poll order: partitions interleaved, each in offset order.
        let records = vec![rec(0, 5), rec(1, 9), rec(0, 6), rec(1, 10), rec(0, 7)];
        let (left, right) = halves(&records);
        assert_eq!(left.len(), 2);
        let l = Batch::from_records(left);
        let r = Batch::from_records(right);
        for p in [0, 1] {
            assert_eq!(l.offsets[&p].next(), r.offsets[&p].first, "partition {p}");
        }
        let (empty, all) = halves(&records[..1]);
        assert!(empty.is_empty() && all.len() == 1);
    }
}
