//! The PostgreSQL connection of a worker: TLS, prepared statements and the
//! per-connection staging tables that COPY writes into.

use postgres::{Client, Statement};
pub use shopstream_common::pg::{DbError, DbSettings};
use shopstream_model::SchemaName;

use crate::copy_layout::columns;
use crate::transform::{ActivityRow, SalesRow};

/// Dimension columns read back after an upsert or a select (`dims.rs` reads them by position).
const CUSTOMER_RETURNED: &str = "customer_id, customer_key, first_order_at, first_order_id, name, email, city, country, segment, signup_date, gender, birth_date";
const PRODUCT_RETURNED: &str = "product_id, product_key, name, category, brand, list_price";

pub struct Statements {
    pub upsert_customers: Statement,
    pub select_customers: Statement,
    pub upsert_products: Statement,
    pub unflag_first_orders: Statement,
    pub select_products: Statement,
    pub insert_facts: Statement,
    pub insert_dead_letters: Statement,
    pub ensure_offsets: Statement,
    pub select_offsets: Statement,
    pub advance_offsets: Statement,
    pub reset_offset: Statement,
    pub copy_sales: String,
    pub copy_activity: String,
    pub copy_slices: String,
    pub fold_slices: Statement,
}

/// An open warehouse connection, ready to load batches into one schema.
pub struct Db {
    pub client: Client,
    pub stmts: Statements,
    pub orders: crate::orders::OrderStatements,
}

impl Db {
    /// Prepare statements and staging tables on a connection whose schema
    /// has been migrated. Long, but only a list: each statement with its SQL
    /// and the reason for it, one after another.
    pub fn prepare(mut client: Client, schema: &SchemaName) -> Result<Self, DbError> {
        let err = |source| DbError::Prepare {
            schema: schema.to_string(),
            source,
        };
        let t = |name: &str| schema.table(name);
        let sales_columns = columns(&SalesRow::LAYOUT);
        let activity_columns = columns(&ActivityRow::LAYOUT);
        client
            .batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS stage_sales (LIKE {sales} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
                 CREATE TEMP TABLE IF NOT EXISTS stage_activity (LIKE {activity} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;",
                sales = t(shopstream_model::warehouse::FACT_SALES),
                activity = t(shopstream_model::warehouse::FACT_ACTIVITY),
            ))
            .map_err(err)?;
        // SCD type 1 by event time: a row's attributes change only for an
        // event at least as new as the one they came from, whatever order
        // batches commit in. The first order only ever moves earlier. Gender
        // and birth date unknown to an event (schema version 1) stay as known.
        let upsert_customers = client
            .prepare(&format!(
                "INSERT INTO {c} AS d (customer_id, name, email, city, country, segment, signup_date,
                                       first_order_at, first_order_id, attributes_at, gender, birth_date)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                      $7::date[], $8::timestamptz[], $9::uuid[], $10::timestamptz[],
                                      $11::text[], $12::date[])
                 ORDER BY 1
                 ON CONFLICT (customer_id) DO UPDATE SET
                     name = CASE WHEN {newer} THEN EXCLUDED.name ELSE d.name END,
                     email = CASE WHEN {newer} THEN EXCLUDED.email ELSE d.email END,
                     city = CASE WHEN {newer} THEN EXCLUDED.city ELSE d.city END,
                     country = CASE WHEN {newer} THEN EXCLUDED.country ELSE d.country END,
                     segment = CASE WHEN {newer} THEN EXCLUDED.segment ELSE d.segment END,
                     signup_date = CASE WHEN {newer} THEN EXCLUDED.signup_date ELSE d.signup_date END,
                     gender = CASE WHEN {newer} THEN coalesce(EXCLUDED.gender, d.gender) ELSE d.gender END,
                     birth_date = CASE WHEN {newer} THEN coalesce(EXCLUDED.birth_date, d.birth_date) ELSE d.birth_date END,
                     attributes_at = GREATEST(d.attributes_at, EXCLUDED.attributes_at),
                     first_order_at = CASE WHEN {earlier} THEN EXCLUDED.first_order_at ELSE d.first_order_at END,
                     first_order_id = CASE WHEN {earlier} THEN EXCLUDED.first_order_id ELSE d.first_order_id END,
                     updated_at = now()
                 WHERE ({newer} AND (d.name, d.email, d.city, d.country, d.segment, d.signup_date,
                                     d.gender, d.birth_date)
                                    IS DISTINCT FROM
                                    (EXCLUDED.name, EXCLUDED.email, EXCLUDED.city, EXCLUDED.country,
                                     EXCLUDED.segment, EXCLUDED.signup_date,
                                     coalesce(EXCLUDED.gender, d.gender), coalesce(EXCLUDED.birth_date, d.birth_date)))
                    OR {earlier}
                 RETURNING {CUSTOMER_RETURNED}",
                c = t(shopstream_model::warehouse::DIM_CUSTOMER),
                newer = "EXCLUDED.attributes_at >= coalesce(d.attributes_at, '-infinity')",
                earlier = "(EXCLUDED.first_order_at IS NOT NULL AND (d.first_order_at IS NULL
                    OR (EXCLUDED.first_order_at, EXCLUDED.first_order_id)
                       < (d.first_order_at, coalesce(d.first_order_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))))",
            ))
            .map_err(err)?;
        let select_customers = client
            .prepare(&format!(
                "SELECT {CUSTOMER_RETURNED} FROM {} WHERE customer_id = ANY($1)",
                t(shopstream_model::warehouse::DIM_CUSTOMER)
            ))
            .map_err(err)?;
        let upsert_products = client
            .prepare(&format!(
                "INSERT INTO {p} AS d (product_id, name, category, brand, list_price, attributes_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[],
                                      $6::timestamptz[])
                 ORDER BY 1
                 ON CONFLICT (product_id) DO UPDATE SET
                     name = EXCLUDED.name, category = EXCLUDED.category, brand = EXCLUDED.brand,
                     list_price = EXCLUDED.list_price, attributes_at = EXCLUDED.attributes_at, updated_at = now()
                 WHERE EXCLUDED.attributes_at >= coalesce(d.attributes_at, '-infinity')
                   AND (d.name, d.category, d.brand, d.list_price)
                       IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.category, EXCLUDED.brand, EXCLUDED.list_price)
                 RETURNING {PRODUCT_RETURNED}",
                p = t(shopstream_model::warehouse::DIM_PRODUCT)
            ))
            .map_err(err)?;
        let select_products = client
            .prepare(&format!(
                "SELECT {PRODUCT_RETURNED} FROM {} WHERE product_id = ANY($1)",
                t(shopstream_model::warehouse::DIM_PRODUCT)
            ))
            .map_err(err)?;
        // A batch that moved customers' first orders earlier clears the flag
        // of the orders that were first until then (the rollups follow by
        // trigger): exactly one first order per customer, whatever the
        // commit order of the workers that loaded them.
        let unflag_first_orders = client
            .prepare(&format!(
                "UPDATE {f} AS f SET is_first_order = false
                 FROM {c} AS c
                 WHERE c.customer_key = ANY($1) AND f.customer_key = c.customer_key
                   AND f.is_first_order AND f.order_id IS DISTINCT FROM c.first_order_id",
                f = t(shopstream_model::warehouse::FACT_SALES),
                c = t(shopstream_model::warehouse::DIM_CUSTOMER),
            ))
            .map_err(err)?;
        // Both fact tables in one statement. The rollups follow from the
        // tables' own triggers (migration 0003), counting only rows actually
        // inserted: duplicates on the wire add nothing. When some staged rows
        // were duplicates ($1, $2: how many were staged), the keys of those
        // inserted come back too, for the filter slices (`slices.rs`).
        let insert_facts = client
            .prepare(&format!(
                "WITH sales AS (
                     INSERT INTO {sales} ({sales_columns}) SELECT {sales_columns} FROM pg_temp.stage_sales
                     ON CONFLICT DO NOTHING
                     RETURNING order_id, line_number
                 ), activity AS (
                     INSERT INTO {activity} ({activity_columns}) SELECT {activity_columns} FROM pg_temp.stage_activity
                     ON CONFLICT DO NOTHING
                     RETURNING event_id
                 ), n AS (
                     SELECT (SELECT count(*) FROM sales) AS sales, (SELECT count(*) FROM activity) AS activity
                 )
                 SELECT n.sales, n.activity,
                        CASE WHEN n.sales < $1 THEN (SELECT array_agg(order_id ORDER BY order_id, line_number) FROM sales) END,
                        CASE WHEN n.sales < $1 THEN (SELECT array_agg(line_number ORDER BY order_id, line_number) FROM sales) END,
                        CASE WHEN n.activity < $2 THEN (SELECT array_agg(event_id) FROM activity) END
                 FROM n",
                sales = t(shopstream_model::warehouse::FACT_SALES),
                activity = t(shopstream_model::warehouse::FACT_ACTIVITY),
            ))
            .map_err(err)?;
        let insert_dead_letters = client
            .prepare(&format!(
                "INSERT INTO {} (topic, kafka_partition, kafka_offset, message_key, payload, error_kind, error,
                                 kafka_timestamp)
                 SELECT $1, * FROM unnest($2::int[], $3::bigint[], $4::bytea[], $5::bytea[], $6::text[], $7::text[],
                                          $8::timestamptz[])
                 ON CONFLICT DO NOTHING",
                t(shopstream_model::warehouse::DEAD_LETTER)
            ))
            .map_err(err)?;
        let ensure_offsets = client
            .prepare(&format!(
                "INSERT INTO {} (consumer_group, topic, kafka_partition, next_offset)
                 SELECT $1, $2, p, 0 FROM unnest($3::int[]) AS p
                 ON CONFLICT DO NOTHING",
                t(shopstream_model::warehouse::INGEST_OFFSETS)
            ))
            .map_err(err)?;
        let select_offsets = client
            .prepare(&format!(
                "SELECT kafka_partition, next_offset FROM {}
                 WHERE consumer_group = $1 AND topic = $2 AND kafka_partition = ANY($3)",
                t(shopstream_model::warehouse::INGEST_OFFSETS)
            ))
            .map_err(err)?;
        // The fence: only advance a partition from the offset this worker
        // started the batch at. A worker that lost the partition finds the
        // row moved on by the new owner and updates nothing.
        let advance_offsets = client
            .prepare(&format!(
                "UPDATE {} AS o SET next_offset = v.next, owner = $3, updated_at = now()
                 FROM unnest($4::int[], $5::bigint[], $6::bigint[]) AS v(p, expected, next)
                 WHERE o.consumer_group = $1 AND o.topic = $2 AND o.kafka_partition = v.p
                   AND o.next_offset = v.expected",
                t(shopstream_model::warehouse::INGEST_OFFSETS)
            ))
            .map_err(err)?;
        let reset_offset = client
            .prepare(&format!(
                "UPDATE {} SET next_offset = $5, owner = $6, updated_at = now()
                 WHERE consumer_group = $1 AND topic = $2 AND kafka_partition = $3 AND next_offset = $4",
                t(shopstream_model::warehouse::INGEST_OFFSETS)
            ))
            .map_err(err)?;
        // This session queues the filter slices of its own rows (`slices.rs`);
        // the triggers of migration 0011 do it for every other writer.
        client
            .batch_execute("SET shopstream.loader_slices = on")
            .map_err(err)?;
        let fold_slices = client
            .prepare(&format!("SELECT {}.fold_slices()", schema.quoted()))
            .map_err(err)?;
        let stmts = Statements {
            upsert_customers,
            select_customers,
            upsert_products,
            select_products,
            unflag_first_orders,
            insert_facts,
            insert_dead_letters,
            ensure_offsets,
            select_offsets,
            advance_offsets,
            reset_offset,
            copy_sales: format!("COPY pg_temp.stage_sales ({sales_columns}) FROM STDIN (FORMAT binary)"),
            copy_activity: format!(
                "COPY pg_temp.stage_activity ({activity_columns}) FROM STDIN (FORMAT binary)"
            ),
            copy_slices: crate::slices::copy_statement(&t(shopstream_model::warehouse::SLICE_QUEUE)),
            fold_slices,
        };
        let orders = crate::orders::OrderStatements::prepare(&mut client, schema).map_err(err)?;
        Ok(Self {
            client,
            stmts,
            orders,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
