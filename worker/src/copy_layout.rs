//! The fact rows' COPY layouts: each column's name and binary type in one
//! list, next to the values written for it, so the three can never drift
//! apart. The staging tables and the final INSERT take their column lists
//! from here too.

use postgres::Transaction;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use crate::dims::Resolved;
use crate::transform::{ActivityRow, SalesRow};

/// Column name and binary type, in COPY order.
pub type Layout = [(&'static str, Type)];

/// The column list of a layout, comma-separated.
pub fn columns(layout: &Layout) -> String {
    layout.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
}

fn types(layout: &Layout) -> Vec<Type> {
    layout.iter().map(|(_, t)| t.clone()).collect()
}

impl SalesRow {
    pub const LAYOUT: [(&'static str, Type); 21] = [
        ("order_id", Type::UUID),
        ("line_number", Type::INT4),
        ("event_id", Type::UUID),
        ("session_id", Type::UUID),
        ("customer_key", Type::INT8),
        ("product_key", Type::INT8),
        ("date_key", Type::INT4),
        ("time_key", Type::INT2),
        ("currency", Type::TEXT),
        ("payment_method", Type::TEXT),
        ("quantity", Type::INT4),
        ("unit_price", Type::NUMERIC),
        ("discount_amount", Type::NUMERIC),
        ("line_total", Type::NUMERIC),
        ("net_amount", Type::NUMERIC),
        ("is_first_order", Type::BOOL),
        ("device_key", Type::INT2),
        ("channel_key", Type::INT2),
        ("event_time", Type::TIMESTAMPTZ),
        ("kafka_partition", Type::INT4),
        ("kafka_offset", Type::INT8),
    ];

    fn write(&self, w: &mut BinaryCopyInWriter<'_>, keys: &Resolved) -> Result<(), postgres::Error> {
        let is_first_order = keys.first_orders[self.customer].map(|f| f.1) == Some(self.order_id);
        let row: [&(dyn ToSql + Sync); 21] = [
            &self.order_id,
            &self.line_number,
            &self.event_id,
            &self.session_id,
            &keys.customer_keys[self.customer],
            &keys.product_keys[self.product],
            &self.date_key,
            &self.time_key,
            &self.currency,
            &self.payment_method,
            &self.quantity,
            &self.unit_price,
            &self.discount_amount,
            &self.line_total,
            &self.net_amount,
            &is_first_order,
            &self.device_key,
            &self.channel_key,
            &self.event_time,
            &self.partition,
            &self.offset,
        ];
        w.write(&row)
    }
}

impl ActivityRow {
    pub const LAYOUT: [(&'static str, Type); 14] = [
        ("event_id", Type::UUID),
        ("event_type", Type::TEXT),
        ("session_id", Type::UUID),
        ("customer_key", Type::INT8),
        ("product_key", Type::INT8),
        ("date_key", Type::INT4),
        ("time_key", Type::INT2),
        ("quantity", Type::INT4),
        ("list_price", Type::NUMERIC),
        ("device_key", Type::INT2),
        ("channel_key", Type::INT2),
        ("event_time", Type::TIMESTAMPTZ),
        ("kafka_partition", Type::INT4),
        ("kafka_offset", Type::INT8),
    ];

    fn write(&self, w: &mut BinaryCopyInWriter<'_>, keys: &Resolved) -> Result<(), postgres::Error> {
        let event_type = self.event_type.as_str();
        let row: [&(dyn ToSql + Sync); 14] = [
            &self.event_id,
            &event_type,
            &self.session_id,
            &keys.customer_keys[self.customer],
            &keys.product_keys[self.product],
            &self.date_key,
            &self.time_key,
            &self.quantity,
            &self.list_price,
            &self.device_key,
            &self.channel_key,
            &self.event_time,
            &self.partition,
            &self.offset,
        ];
        w.write(&row)
    }
}

/// COPY `rows` into the staging table that `copy` (a `COPY ... FROM STDIN`
/// statement over `layout`'s columns) names; returns how many were staged.
pub fn stage<R>(
    tx: &mut Transaction<'_>,
    copy: &str,
    layout: &Layout,
    rows: &[R],
    keys: &Resolved,
    write: fn(&R, &mut BinaryCopyInWriter<'_>, &Resolved) -> Result<(), postgres::Error>,
) -> Result<u64, postgres::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut w = BinaryCopyInWriter::new(tx.copy_in(copy)?, &types(layout));
    for row in rows {
        write(row, &mut w, keys)?;
    }
    w.finish()?;
    Ok(rows.len() as u64)
}

/// Stage the batch's order lines and activity rows; returns both counts.
pub fn stage_facts(
    tx: &mut Transaction<'_>,
    copy_sales: &str,
    copy_activity: &str,
    sales: &[SalesRow],
    activity: &[ActivityRow],
    keys: &Resolved,
) -> Result<(u64, u64), postgres::Error> {
    let staged_sales = stage(tx, copy_sales, &SalesRow::LAYOUT, sales, keys, SalesRow::write)?;
    let staged_activity = stage(
        tx,
        copy_activity,
        &ActivityRow::LAYOUT,
        activity,
        keys,
        ActivityRow::write,
    )?;
    Ok((staged_sales, staged_activity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_name_each_column_once() {
        for layout in [&SalesRow::LAYOUT[..], &ActivityRow::LAYOUT[..]] {
            let mut names: Vec<_> = layout.iter().map(|(c, _)| *c).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), layout.len());
        }
        assert!(columns(&ActivityRow::LAYOUT).starts_with("event_id, event_type, session_id"));
    }
}
