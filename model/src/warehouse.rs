//! Warehouse names shared by the worker, the dashboard and the operator.

use std::fmt;

use thiserror::Error;

/// The regular expression the `Pipeline` CRD uses for `warehouse.schema`;
/// [`SchemaName::parse`] enforces the same rule.
pub const SCHEMA_NAME_PATTERN: &str = "^[a-z_][a-z0-9_]{0,62}$";

pub const DIM_CUSTOMER: &str = "dim_customer";
pub const DIM_PRODUCT: &str = "dim_product";
pub const DIM_DATE: &str = "dim_date";
pub const DIM_TIME: &str = "dim_time";
pub const FACT_SALES: &str = "fact_sales";
pub const FACT_ACTIVITY: &str = "fact_activity";
pub const DEAD_LETTER: &str = "dead_letter";
pub const INGEST_OFFSETS: &str = "ingest_offsets";
pub const DIM_DEVICE: &str = "dim_device";
pub const DIM_CHANNEL: &str = "dim_channel";
/// One row per order: its status and lifecycle times (accumulating snapshot).
pub const FACT_ORDER: &str = "fact_order";
/// Every order status event, once, by event id.
pub const ORDER_STATUS_EVENT: &str = "order_status_event";
// Rollups the fact tables' triggers maintain (migration 0003), read by the dashboard.
pub const AGG_SALES_MINUTE: &str = "agg_sales_minute";
pub const AGG_SALES_HOUR: &str = "agg_sales_hour";
pub const AGG_ACTIVITY_MINUTE: &str = "agg_activity_minute";
pub const AGG_ACTIVITY_HOUR: &str = "agg_activity_hour";
/// A view over the product rollups.
pub const AGG_PRODUCT: &str = "agg_product";
pub const AGG_GEO: &str = "agg_geo";
/// Revenue by where orders stand, and why they were canceled or refunded (migration 0008).
pub const V_REVENUE_BY_STATUS: &str = "v_revenue_by_status";
pub const V_ORDER_STATUS_REASONS: &str = "v_order_status_reasons";
/// Monthly cohorts: customers by first-order month ordering k months later (migration 0009).
pub const AGG_CUSTOMER_MONTH: &str = "agg_customer_month";
pub const V_COHORT_RETENTION: &str = "v_cohort_retention";
/// Sessions with a cart add, and whether they ordered (migration 0010).
pub const AGG_CART_SESSION: &str = "agg_cart_session";
/// Filter slices (migration 0011): rollups, their queue, and the views readers sum.
pub const AGG_SLICE: &str = "agg_slice";
pub const AGG_ORDER_SLICE: &str = "agg_order_slice";
pub const SLICE_QUEUE: &str = "slice_queue";
pub const V_SLICE: &str = "v_slice";
pub const V_ORDER_SLICE: &str = "v_order_slice";

/// A validated PostgreSQL schema name: lower-case letters, digits and `_`,
/// not starting with a digit, at most 63 bytes, not a system schema. It is
/// still always quoted when put into SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemaName(String);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid schema name `{name}`: {reason}")]
pub struct SchemaNameError {
    pub name: String,
    pub reason: &'static str,
}

impl SchemaName {
    pub fn parse(name: &str) -> Result<Self, SchemaNameError> {
        let fail = |reason| {
            Err(SchemaNameError {
                name: name.to_string(),
                reason,
            })
        };
        let Some(first) = name.bytes().next() else {
            return fail("it is empty");
        };
        if name.len() > 63 {
            return fail("PostgreSQL identifiers are at most 63 bytes");
        }
        if !(first.is_ascii_lowercase() || first == b'_') {
            return fail("it must start with a lower-case letter or `_`");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return fail("only lower-case letters, digits and `_` are allowed");
        }
        if name.starts_with("pg_") || name == "information_schema" {
            return fail("it is reserved for PostgreSQL system schemas");
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier. Validation already excludes
    /// quotes; quoting keeps keywords like `user` or `order` usable.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// `"schema"."table"`.
    pub fn table(&self, table: &str) -> String {
        format!("\"{}\".\"{}\"", self.0, table)
    }
}

/// The workers' consumer group for a warehouse schema, unless one is given:
/// the operator sets it and the worker defaults to it.
pub fn default_group(schema: &str) -> String {
    format!("shopstream-{schema}")
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        let cases: &[(&str, Option<&str>)] = &[
            ("shopstream", None),
            ("_private", None),
            ("shop_2026", None),
            ("order", None), // a keyword, fine because it is always quoted
            ("", Some("empty")),
            ("Shop", Some("start with a lower-case")),
            ("2shop", Some("start with a lower-case")),
            ("shop-events", Some("only lower-case")),
            ("shop\"; DROP SCHEMA public; --", Some("only lower-case")),
            ("pg_catalog", Some("reserved")),
            ("information_schema", Some("reserved")),
            (&"a".repeat(64), Some("63 bytes")),
        ];
        for (name, err) in cases {
            match (SchemaName::parse(name), err) {
                (Ok(s), None) => assert_eq!(s.quoted(), format!("\"{name}\"")),
                (Err(e), Some(needle)) => assert!(e.to_string().contains(needle), "{name}: {e}"),
                (got, want) => panic!("{name}: got {got:?}, want error {want:?}"),
            }
        }
        assert_eq!(
            SchemaName::parse("s")
                .unwrap()
                .table(crate::warehouse::FACT_SALES),
            "\"s\".\"fact_sales\""
        );
    }

    #[test]
    fn the_crd_pattern_matches_the_rule() {
        // The pattern is a literal; keep it in step with `parse`.
        assert_eq!(SCHEMA_NAME_PATTERN, "^[a-z_][a-z0-9_]{0,62}$");
    }
}
