//! The order lifecycle, exactly once (migration 0008): each status event is
//! kept once by its event id, and every order a batch touches (placed or
//! updated) is recomputed from its lines and all of its status events. The
//! result does not depend on arrival order: an event applied twice, or an
//! older one after a newer, changes nothing, and a status event that comes
//! before its order waits in `order_status_event` until the purchase loads.

use postgres::{Client, Statement, Transaction};
use rust_decimal::Decimal;
use shopstream_model::SchemaName;
use shopstream_model::warehouse::{FACT_ORDER, FACT_SALES, ORDER_STATUS_EVENT};
use uuid::Uuid;

use crate::transform::Batch;

/// Advisory lock class of an order's recomputation ("ORDR").
const ORDER_LOCK_CLASS: i32 = 0x4f52_4452;

pub struct OrderStatements {
    insert_events: Statement,
    lock_orders: Statement,
    refresh: Statement,
}

impl OrderStatements {
    pub fn prepare(client: &mut Client, schema: &SchemaName) -> Result<Self, postgres::Error> {
        let t = |name: &str| schema.table(name);
        let insert_events = client.prepare(&format!(
            "INSERT INTO {} (event_id, order_id, status, event_time, reason, refund_amount, refund_units,
                             kafka_partition, kafka_offset)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[],
                                  $6::numeric[], $7::int[], $8::int[], $9::bigint[])
             ON CONFLICT DO NOTHING",
            t(ORDER_STATUS_EVENT)
        ))?;
        // Workers loading an order's purchase and its status events at the
        // same time (different partitions) take turns per order: the one that
        // recomputes second sees what the first committed, so neither
        // overwrites the other's result. Sorted, so two batches never deadlock.
        let lock_orders = client.prepare(&format!(
            "SELECT pg_advisory_xact_lock({ORDER_LOCK_CLASS}, h)
             FROM (SELECT DISTINCT hashtext(id::text) AS h FROM unnest($1::uuid[]) AS id) AS ids ORDER BY h"
        ))?;
        let refresh = client.prepare(&refresh_sql(schema))?;
        Ok(Self {
            insert_events,
            lock_orders,
            refresh,
        })
    }
}

/// Recompute `fact_order` for the orders in `$1` from their lines and status
/// events. Canceled wins over a later completion (an order is canceled only
/// before it completes); refunded needs a completion.
fn refresh_sql(schema: &SchemaName) -> String {
    format!(
        "WITH lines AS (
             SELECT order_id, min(customer_key) AS customer_key, min(date_key) AS date_key,
                    min(time_key) AS time_key, min(device_key) AS device_key, min(channel_key) AS channel_key,
                    min(payment_method) AS payment_method, min(currency) AS currency,
                    min(event_time) AS placed_at, count(*)::int AS lines, sum(quantity)::int AS units,
                    sum(net_amount) AS booked
             FROM {sales} WHERE order_id = ANY($1) GROUP BY order_id
         ), events AS (
             SELECT order_id,
                    min(event_time) FILTER (WHERE status = 'completed') AS completed_at,
                    min(event_time) FILTER (WHERE status = 'canceled') AS canceled_at,
                    max(event_time) FILTER (WHERE status = 'refunded') AS refunded_at,
                    (array_agg(reason ORDER BY event_time, event_id) FILTER (WHERE status = 'canceled'))[1]
                        AS cancel_reason,
                    (array_agg(reason ORDER BY event_time DESC, event_id) FILTER (WHERE status = 'refunded'))[1]
                        AS refund_reason,
                    coalesce(sum(refund_amount) FILTER (WHERE status = 'refunded'), 0) AS refunded
             FROM {events} WHERE order_id = ANY($1) GROUP BY order_id
         )
         INSERT INTO {orders} AS o (order_id, customer_key, date_key, time_key, device_key, channel_key,
                                    payment_method, currency, status, placed_at, completed_at, canceled_at,
                                    refunded_at, cancel_reason, refund_reason, lines, units, booked_amount,
                                    refunded_amount)
         SELECT l.order_id, l.customer_key, l.date_key, l.time_key, l.device_key, l.channel_key,
                l.payment_method, l.currency,
                CASE WHEN e.canceled_at IS NOT NULL AND (e.completed_at IS NULL OR e.canceled_at < e.completed_at)
                          THEN 'canceled'
                     WHEN e.completed_at IS NOT NULL AND e.refunded_at IS NOT NULL THEN 'refunded'
                     WHEN e.completed_at IS NOT NULL THEN 'completed'
                     ELSE 'pending' END,
                l.placed_at, e.completed_at, e.canceled_at, e.refunded_at, e.cancel_reason, e.refund_reason,
                l.lines, l.units, l.booked, coalesce(e.refunded, 0)
         FROM lines l LEFT JOIN events e USING (order_id)
         ORDER BY l.order_id
         ON CONFLICT (order_id) DO UPDATE SET
             status = EXCLUDED.status, completed_at = EXCLUDED.completed_at,
             canceled_at = EXCLUDED.canceled_at, refunded_at = EXCLUDED.refunded_at,
             cancel_reason = EXCLUDED.cancel_reason, refund_reason = EXCLUDED.refund_reason,
             lines = EXCLUDED.lines, units = EXCLUDED.units, booked_amount = EXCLUDED.booked_amount,
             refunded_amount = EXCLUDED.refunded_amount, updated_at = now()
         WHERE (o.status, o.completed_at, o.canceled_at, o.refunded_at, o.cancel_reason, o.refund_reason,
                o.lines, o.units, o.booked_amount, o.refunded_amount)
               IS DISTINCT FROM
               (EXCLUDED.status, EXCLUDED.completed_at, EXCLUDED.canceled_at, EXCLUDED.refunded_at,
                EXCLUDED.cancel_reason, EXCLUDED.refund_reason, EXCLUDED.lines, EXCLUDED.units,
                EXCLUDED.booked_amount, EXCLUDED.refunded_amount)",
        sales = schema.table(FACT_SALES),
        events = schema.table(ORDER_STATUS_EVENT),
        orders = schema.table(FACT_ORDER),
    )
}

/// Keep the batch's status events and recompute every order the batch
/// touches, inside its transaction; returns how many status events were new.
pub fn apply(
    tx: &mut Transaction<'_>,
    stmts: &OrderStatements,
    batch: &Batch,
) -> Result<u64, postgres::Error> {
    let updates = &batch.order_updates;
    let mut touched: Vec<Uuid> = batch
        .sales
        .iter()
        .map(|s| s.order_id)
        .chain(updates.iter().map(|u| u.order_id))
        .collect();
    if touched.is_empty() {
        return Ok(0);
    }
    touched.sort_unstable();
    touched.dedup();
    let inserted = if updates.is_empty() {
        0
    } else {
        let ids: Vec<Uuid> = updates.iter().map(|u| u.event_id).collect();
        let orders: Vec<Uuid> = updates.iter().map(|u| u.order_id).collect();
        let statuses: Vec<&str> = updates.iter().map(|u| u.status).collect();
        let times: Vec<chrono::DateTime<chrono::Utc>> = updates.iter().map(|u| u.event_time).collect();
        let reasons: Vec<Option<&str>> = updates.iter().map(|u| u.reason.as_deref()).collect();
        let amounts: Vec<Decimal> = updates.iter().map(|u| u.refund_amount).collect();
        let units: Vec<i32> = updates.iter().map(|u| u.refund_units).collect();
        let partitions: Vec<i32> = updates.iter().map(|u| u.partition).collect();
        let offsets: Vec<i64> = updates.iter().map(|u| u.offset).collect();
        tx.execute(
            &stmts.insert_events,
            &[
                &ids,
                &orders,
                &statuses,
                &times,
                &reasons,
                &amounts,
                &units,
                &partitions,
                &offsets,
            ],
        )?
    };
    tx.execute(&stmts.lock_orders, &[&touched])?;
    tx.execute(&stmts.refresh, &[&touched])?;
    Ok(inserted)
}
