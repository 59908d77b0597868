//! The dashboard's global filters: a time range and country, segment,
//! category and device. Every filtered panel reads the filter slices of
//! migration 0011 (`v_slice`, `v_order_slice`); a range maps to one grain of
//! them and a number of whole buckets up to the current one, like the
//! summary's windows.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use shopstream_model::Device;
use tokio_postgres::types::ToSql;

/// A time range, as the page and the API spell it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Range {
    #[serde(rename = "15m")]
    Minutes15,
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "6h")]
    Hours6,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Days7,
    #[serde(rename = "30d")]
    Days30,
    #[default]
    #[serde(rename = "all")]
    All,
}

/// The slice grain a range reads and how many buckets of it (None: all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub grain: Grain,
    pub buckets: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Minute,
    Hour,
    Day,
}

impl Grain {
    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Minute => "minute",
            Grain::Hour => "hour",
            Grain::Day => "day",
        }
    }

    fn length(self) -> TimeDelta {
        match self {
            Grain::Minute => TimeDelta::minutes(1),
            Grain::Hour => TimeDelta::hours(1),
            Grain::Day => TimeDelta::days(1),
        }
    }

    /// The bucket after `b`.
    pub fn next(self, b: DateTime<Utc>) -> DateTime<Utc> {
        b + self.length()
    }

    /// The bucket holding `t` (UTC).
    pub fn bucket(self, t: DateTime<Utc>) -> DateTime<Utc> {
        t.duration_trunc(self.length()).unwrap_or(t)
    }
}

impl Range {
    /// Ranges up to 6 h read minutes, up to a week hours, longer ones days:
    /// at most 360 buckets per slice key, whatever the range.
    pub fn span(self) -> Span {
        let (grain, buckets) = match self {
            Range::Minutes15 => (Grain::Minute, Some(15)),
            Range::Hour => (Grain::Minute, Some(60)),
            Range::Hours6 => (Grain::Minute, Some(360)),
            Range::Day => (Grain::Hour, Some(24)),
            Range::Days7 => (Grain::Hour, Some(168)),
            Range::Days30 => (Grain::Day, Some(30)),
            Range::All => (Grain::Day, None),
        };
        Span { grain, buckets }
    }

    /// `[start, end)` of the range at `now`: whole buckets up to and
    /// including the one in progress (start None: from the beginning).
    pub fn bounds(self, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, DateTime<Utc>) {
        let span = self.span();
        let end = span.grain.bucket(now) + span.grain.length();
        let start = span.buckets.map(|n| end - span.grain.length() * (n as i32));
        (start, end)
    }

    /// The same number of buckets just before the range (None for all time).
    pub fn previous(self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let (start, end) = self.bounds(now);
        start.map(|s| (s - (end - s), s))
    }
}

/// Migration 0011's functions over the filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// Sales per bucket and country, segment, device, payment method.
    SalesSlices,
    /// Sales per bucket.
    SalesTotals,
    /// Page views and cart adds per bucket.
    ActivityTotals,
}

impl Function {
    fn name(self) -> &'static str {
        match self {
            Function::SalesSlices => "sales_slices",
            Function::SalesTotals => "sales_totals",
            Function::ActivityTotals => "activity_totals",
        }
    }
}

/// The filter query parameters every panel accepts.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FilterParams {
    #[serde(default)]
    pub range: Range,
    pub country: Option<String>,
    pub segment: Option<String>,
    pub category: Option<String>,
    pub device: Option<String>,
}

/// Validated filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    pub range: Range,
    pub country: Option<String>,
    pub segment: Option<String>,
    pub category: Option<String>,
    pub device: Option<Device>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    #[error("unknown device `{0}`: expected one of {1}")]
    Device(String, String),
    #[error("filter `{0}` is longer than 100 characters")]
    TooLong(&'static str),
}

impl FilterParams {
    /// Empty values mean no filter (a cleared form field).
    pub fn validate(self) -> Result<Filters, FilterError> {
        let text = |name: &'static str, v: Option<String>| -> Result<Option<String>, FilterError> {
            match v.filter(|v| !v.is_empty()) {
                Some(v) if v.len() > 100 => Err(FilterError::TooLong(name)),
                v => Ok(v),
            }
        };
        let device = match self.device.filter(|d| !d.is_empty()) {
            None => None,
            Some(d) => Some(
                Device::ALL
                    .iter()
                    .copied()
                    .find(|x| x.as_str() == d)
                    .ok_or_else(|| {
                        let names: Vec<&str> = Device::ALL.iter().map(|x| x.as_str()).collect();
                        FilterError::Device(d, names.join(", "))
                    })?,
            ),
        };
        Ok(Filters {
            range: self.range,
            country: text("country", self.country)?,
            segment: text("segment", self.segment)?,
            category: text("category", self.category)?,
            device,
        })
    }
}

/// A fragment of SQL (a condition, or a FROM item such as a filter
/// function's call) and its parameters, numbered from `$1`.
pub struct Condition {
    pub sql: String,
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Condition {
    /// `true`, for conditions built up with `push_value`.
    pub fn always() -> Self {
        Self {
            sql: "true".into(),
            params: Vec::new(),
        }
    }

    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }

    /// `AND column op $n`.
    pub fn push_value(&mut self, column: &str, op: &str, value: Box<dyn ToSql + Sync + Send>) {
        self.params.push(value);
        self.sql
            .push_str(&format!(" AND {column} {op} ${}", self.params.len()));
    }

    /// `AND (a, b, ...) op ($n, $n+1, ...)`: a row comparison (keyset paging).
    pub fn push_row(&mut self, row: &str, op: &str, values: Vec<Box<dyn ToSql + Sync + Send>>) {
        let mut placeholders = Vec::new();
        for v in values {
            self.params.push(v);
            placeholders.push(format!("${}", self.params.len()));
        }
        self.sql
            .push_str(&format!(" AND {row} {op} ({})", placeholders.join(", ")));
    }
}

impl Filters {
    pub fn has_dimensions(&self) -> bool {
        self.country.is_some() || self.segment.is_some() || self.category.is_some() || self.device.is_some()
    }

    /// The `v_slice` rows (activity and category lines) of grain `grain` in
    /// `[start, end)` (either open) that pass the dimension filters.
    pub fn condition(
        &self,
        grain: Grain,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Condition {
        let mut c = Condition {
            sql: "grain = $1".into(),
            params: vec![Box::new(grain.as_str())],
        };
        if let Some(start) = start {
            c.push_value("bucket", ">=", Box::new(start));
        }
        if let Some(end) = end {
            c.push_value("bucket", "<", Box::new(end));
        }
        self.push_dimensions(&mut c, "", "", "");
        c
    }

    /// The same filters over a fact table aliased `f` joined to
    /// `dim_customer c` and `dim_product p` (for the panels the slices
    /// cannot answer: per product), numbered from `$1`.
    pub fn fact_condition(&self, now: DateTime<Utc>) -> Condition {
        let (start, end) = self.range.bounds(now);
        let mut c = Condition {
            sql: "f.event_time < $1".into(),
            params: vec![Box::new(end)],
        };
        if let Some(start) = start {
            c.push_value("f.event_time", ">=", Box::new(start));
        }
        self.push_dimensions(&mut c, "c.", "p.", "f.");
        c
    }

    /// `AND` each dimension filter that is set, its columns prefixed by
    /// the alias of the customer's, the product's and the fact's table
    /// (empty over the slices, which carry all three).
    pub fn push_dimensions(&self, c: &mut Condition, customer: &str, product: &str, fact: &str) {
        for (column, value) in [
            (format!("{customer}country"), &self.country),
            (format!("{customer}segment"), &self.segment),
            (format!("{product}category"), &self.category),
        ] {
            if let Some(v) = value {
                c.push_value(&column, "=", Box::new(v.clone()));
            }
        }
        if let Some(d) = self.device {
            c.push_value(&format!("{fact}device_key"), "=", Box::new(d.key()));
        }
    }

    /// The joins `fact_condition` needs on a fact table aliased `f`:
    /// `dim_customer c` for a country or segment, `dim_product p` for a category.
    pub fn fact_joins(&self, schema: &shopstream_model::SchemaName) -> String {
        let mut joins = String::new();
        if self.country.is_some() || self.segment.is_some() {
            joins.push_str(&format!(
                " JOIN {} c USING (customer_key)",
                schema.table(shopstream_model::warehouse::DIM_CUSTOMER)
            ));
        }
        if self.category.is_some() {
            joins.push_str(&format!(
                " JOIN {} p USING (product_key)",
                schema.table(shopstream_model::warehouse::DIM_PRODUCT)
            ));
        }
        joins
    }

    /// A call of one of migration 0011's filter functions (`sales_slices`,
    /// `sales_totals`, `activity_totals`) under these filters for grain
    /// `grain` in `[start, end)`, as a FROM item with its parameters
    /// `$1..$7`: the functions choose the table that answers.
    pub fn call(
        &self,
        function: Function,
        schema: &shopstream_model::SchemaName,
        grain: Grain,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Condition {
        Condition {
            sql: format!(
                "{}.{}($1::text, $2::timestamptz, $3::timestamptz, $4::text, $5::text, $6::text, $7::smallint)",
                schema.quoted(),
                function.name()
            ),
            params: vec![
                Box::new(grain.as_str()),
                Box::new(start),
                Box::new(end),
                Box::new(self.country.clone()),
                Box::new(self.segment.clone()),
                Box::new(self.category.clone()),
                Box::new(self.device.map(|d| d.key())),
            ],
        }
    }

    /// The same over the range.
    pub fn call_in_range(
        &self,
        function: Function,
        schema: &shopstream_model::SchemaName,
        now: DateTime<Utc>,
    ) -> Condition {
        let (start, end) = self.range.bounds(now);
        self.call(function, schema, self.range.span().grain, start, Some(end))
    }

    /// The range's rows of `v_slice`.
    pub fn in_range(&self, now: DateTime<Utc>) -> Condition {
        let (start, end) = self.range.bounds(now);
        self.condition(self.range.span().grain, start, Some(end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn each_range_reads_whole_buckets_of_one_grain_up_to_now() {
        let now = t("2026-12-04T10:34:56Z");
        // (range, grain, start, end)
        let cases = [
            (
                Range::Minutes15,
                Grain::Minute,
                Some("2026-12-04T10:20:00Z"),
                "2026-12-04T10:35:00Z",
            ),
            (
                Range::Hour,
                Grain::Minute,
                Some("2026-12-04T09:35:00Z"),
                "2026-12-04T10:35:00Z",
            ),
            (
                Range::Hours6,
                Grain::Minute,
                Some("2026-12-04T04:35:00Z"),
                "2026-12-04T10:35:00Z",
            ),
            (
                Range::Day,
                Grain::Hour,
                Some("2026-12-03T11:00:00Z"),
                "2026-12-04T11:00:00Z",
            ),
            (
                Range::Days7,
                Grain::Hour,
                Some("2026-11-27T11:00:00Z"),
                "2026-12-04T11:00:00Z",
            ),
            (
                Range::Days30,
                Grain::Day,
                Some("2026-11-05T00:00:00Z"),
                "2026-12-05T00:00:00Z",
            ),
            (Range::All, Grain::Day, None, "2026-12-05T00:00:00Z"),
        ];
        for (range, grain, start, end) in cases {
            assert_eq!(range.span().grain, grain, "{range:?}");
            assert_eq!(range.bounds(now), (start.map(t), t(end)), "{range:?}");
        }
        assert_eq!(
            Range::Minutes15.previous(now),
            Some((t("2026-12-04T10:05:00Z"), t("2026-12-04T10:20:00Z")))
        );
        assert_eq!(Range::All.previous(now), None);
    }

    #[test]
    fn filters_validate_and_become_one_condition() {
        let params = |device: &str| FilterParams {
            range: Range::Hour,
            country: Some("DE".into()),
            segment: Some(String::new()),
            category: Some("Toys".into()),
            device: Some(device.into()),
        };
        let f = params("mobile").validate().unwrap();
        assert_eq!(f.segment, None, "an empty field is no filter");
        assert_eq!(f.device, Some(Device::Mobile));
        assert!(f.has_dimensions() && !Filters::default().has_dimensions());
        let c = f.condition(
            Grain::Minute,
            Some(t("2026-12-04T10:00:00Z")),
            Some(t("2026-12-04T11:00:00Z")),
        );
        assert_eq!(
            c.sql,
            "grain = $1 AND bucket >= $2 AND bucket < $3 AND country = $4 AND category = $5 AND device_key = $6"
        );
        assert_eq!(c.params.len(), 6);
        let day = f.condition(Grain::Day, None, Some(t("2026-12-05T00:00:00Z")));
        assert_eq!(
            day.sql,
            "grain = $1 AND bucket < $2 AND country = $3 AND category = $4 AND device_key = $5"
        );
        let schema = shopstream_model::SchemaName::parse("shop").unwrap();
        let sales = f.call(Function::SalesTotals, &schema, Grain::Hour, None, None);
        assert!(
            sales.sql.starts_with("\"shop\".sales_totals($1::text"),
            "{}",
            sales.sql
        );
        assert_eq!(sales.params.len(), 7);
        match params("fridge").validate() {
            Err(FilterError::Device(d, names)) => {
                assert_eq!(d, "fridge");
                assert!(names.contains("smart_tv"), "{names}");
            }
            other => panic!("{other:?}"),
        }
        let long = FilterParams {
            country: Some("x".repeat(101)),
            ..FilterParams::default()
        };
        assert_eq!(long.validate(), Err(FilterError::TooLong("country")));
    }
}
