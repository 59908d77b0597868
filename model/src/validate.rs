//! Parsing and validation of wire events.
//!
//! [`parse_event`] is the single entry point: bytes in, a valid [`Event`] or a
//! [`ValidationError`] naming the field and the rule broken. The worker stores
//! the error's text and [`ErrorKind`] in the dead-letter table.

use std::fmt;

use chrono::{Datelike, Months};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::error::Category;
use thiserror::Error;

use crate::event::{
    Customer, Event, EventType, LineItem, MONEY_SCALE, OrderUpdate, Product, READABLE_SCHEMA_VERSIONS,
};

/// Upper bound on order lines; protects the warehouse from absurd payloads.
pub const MAX_ORDER_LINES: usize = 200;
/// Upper bound on a line or cart quantity.
pub const MAX_QUANTITY: i64 = 10_000;
/// Upper bound on a price or discount. With at most [`MAX_QUANTITY`] units
/// per line and [`MAX_ORDER_LINES`] lines, a line stays below 10^10 and an
/// order below 2*10^12: a million maximal lines still fit the warehouse's
/// numeric(18,2) (< 10^16), and the rollups sum in unbounded numeric.
pub const MAX_PRICE: Decimal = Decimal::from_parts(100_000_000, 0, 0, false, 2); // 1,000,000.00
/// Upper bound on a refunded line's amount: a whole line of the largest
/// order line ([`MAX_QUANTITY`] units at [`MAX_PRICE`]).
pub const MAX_REFUND_LINE: Decimal = Decimal::from_parts(
    1_000_000_000_000_u64 as u32,
    (1_000_000_000_000_u64 >> 32) as u32,
    0,
    false,
    2,
); // 10,000,000,000.00
/// Upper bound on identifier and attribute lengths, in bytes.
pub const MAX_TEXT_LEN: usize = 256;
/// Event times outside these years are clock bugs; the warehouse calendar
/// (`dim_date`) covers exactly this range.
pub const MIN_EVENT_YEAR: i32 = 2000;
pub const MAX_EVENT_YEAR: i32 = 2099;
/// The youngest a customer may be at an event (shops' usual terms), and the
/// earliest birth year: anything else is a form default or a typo.
pub const MIN_CUSTOMER_AGE: u32 = 13;
pub const MIN_BIRTH_YEAR: i32 = 1900;

/// Broad class of a validation failure, stable for metrics and the warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    NotUtf8,
    NotJson,
    MissingField,
    WrongType,
    InvalidValue,
    UnknownEventType,
    UnsupportedSchemaVersion,
    /// Valid on the wire, but the warehouse refused to store it (a constraint
    /// or limit the validation does not know); isolated from its batch.
    RejectedByWarehouse,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::NotUtf8,
        ErrorKind::NotJson,
        ErrorKind::MissingField,
        ErrorKind::WrongType,
        ErrorKind::InvalidValue,
        ErrorKind::UnknownEventType,
        ErrorKind::UnsupportedSchemaVersion,
        ErrorKind::RejectedByWarehouse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotUtf8 => "not_utf8",
            ErrorKind::NotJson => "not_json",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::WrongType => "wrong_type",
            ErrorKind::InvalidValue => "invalid_value",
            ErrorKind::UnknownEventType => "unknown_event_type",
            ErrorKind::UnsupportedSchemaVersion => "unsupported_schema_version",
            ErrorKind::RejectedByWarehouse => "rejected_by_warehouse",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a payload is not a valid event. Field paths use dots and `[i]`, e.g.
/// `order.lines[2].quantity`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    #[error("payload is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("payload is not valid JSON: {detail}")]
    NotJson { detail: String },
    #[error("missing required field `{field}`")]
    MissingField { field: String },
    #[error("field `{field}` has the wrong type: {detail}")]
    WrongType { field: String, detail: String },
    #[error("field `{field}` {rule}")]
    InvalidValue { field: String, rule: String },
    #[error(
        "unknown event_type `{found}` (expected page_view, add_to_cart, purchase, order_completed, order_canceled or order_refunded)"
    )]
    UnknownEventType { found: String },
    #[error("unsupported schema_version {found} (this build reads versions {} to {})", READABLE_SCHEMA_VERSIONS.start(), READABLE_SCHEMA_VERSIONS.end())]
    UnsupportedSchemaVersion { found: String },
}

impl ValidationError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ValidationError::NotUtf8 { .. } => ErrorKind::NotUtf8,
            ValidationError::NotJson { .. } => ErrorKind::NotJson,
            ValidationError::MissingField { .. } => ErrorKind::MissingField,
            ValidationError::WrongType { .. } => ErrorKind::WrongType,
            ValidationError::InvalidValue { .. } => ErrorKind::InvalidValue,
            ValidationError::UnknownEventType { .. } => ErrorKind::UnknownEventType,
            ValidationError::UnsupportedSchemaVersion { .. } => ErrorKind::UnsupportedSchemaVersion,
        }
    }

    fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        ValidationError::InvalidValue {
            field: field.into(),
            rule: rule.into(),
        }
    }

    fn missing(field: impl Into<String>) -> Self {
        ValidationError::MissingField { field: field.into() }
    }
}

/// Parse one Kafka message value into a valid event.
pub fn parse_event(payload: &[u8]) -> Result<Event<'_>, ValidationError> {
    let text = std::str::from_utf8(payload).map_err(|e| ValidationError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let mut de = serde_json::Deserializer::from_str(text);
    let event: Event<'_> = serde_path_to_error::deserialize(&mut de).map_err(|err| classify(text, err))?;
    // Trailing bytes after the object make the payload malformed, not valid.
    de.end().map_err(|e| ValidationError::NotJson {
        detail: message_without_position(&e),
    })?;
    validate(&event)?;
    Ok(event)
}

/// Rules that serde's types alone cannot express.
pub fn validate(event: &Event<'_>) -> Result<(), ValidationError> {
    if !READABLE_SCHEMA_VERSIONS.contains(&event.schema_version) {
        return Err(ValidationError::UnsupportedSchemaVersion {
            found: event.schema_version.to_string(),
        });
    }
    if event.event_id.is_nil() {
        return Err(ValidationError::invalid("event_id", "must not be the nil UUID"));
    }
    let year = event.event_time.year();
    if !(MIN_EVENT_YEAR..=MAX_EVENT_YEAR).contains(&year) {
        return Err(ValidationError::invalid(
            "event_time",
            format!(
                "must fall in the years {MIN_EVENT_YEAR} to {MAX_EVENT_YEAR} (got {})",
                event.event_time
            ),
        ));
    }
    if event.session_id.is_nil() {
        return Err(ValidationError::invalid("session_id", "must not be the nil UUID"));
    }
    validate_customer(&event.customer)?;
    validate_shopper(event)?;
    match event.event_type {
        EventType::PageView | EventType::AddToCart => {
            let product = event
                .product
                .as_ref()
                .ok_or_else(|| ValidationError::missing("product"))?;
            validate_product(&|| "product".into(), product)?;
            if event.event_type == EventType::AddToCart {
                let quantity = event
                    .quantity
                    .ok_or_else(|| ValidationError::missing("quantity"))?;
                check_quantity(quantity).at(|| "quantity".into())?;
            }
        }
        EventType::Purchase => {
            let order = event
                .order
                .as_ref()
                .ok_or_else(|| ValidationError::missing("order"))?;
            if order.order_id.is_nil() {
                return Err(ValidationError::invalid(
                    "order.order_id",
                    "must not be the nil UUID",
                ));
            }
            let currency = order.currency.as_ref();
            if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(ValidationError::invalid(
                    "order.currency",
                    format!("must be a three-letter ISO 4217 code (got `{currency}`)"),
                ));
            }
            check_text(&order.payment_method).at(|| "order.payment_method".into())?;
            if order.lines.is_empty() || order.lines.len() > MAX_ORDER_LINES {
                return Err(ValidationError::invalid(
                    "order.lines",
                    format!(
                        "must hold 1 to {MAX_ORDER_LINES} lines (got {})",
                        order.lines.len()
                    ),
                ));
            }
            for (i, line) in order.lines.iter().enumerate() {
                validate_line(i, line)?;
            }
        }
        EventType::OrderCompleted | EventType::OrderCanceled | EventType::OrderRefunded => {
            if event.schema_version < 2 {
                return Err(ValidationError::invalid(
                    "event_type",
                    format!("`{}` needs schema_version 2 or later", event.event_type),
                ));
            }
            let update = event
                .order_update
                .as_ref()
                .ok_or_else(|| ValidationError::missing("order_update"))?;
            validate_order_update(event.event_type, update)?;
        }
    }
    Ok(())
}

/// A status change: the order it names, a reason for cancellations and
/// refunds, and for refunds the lines refunded (each line once).
fn validate_order_update(t: EventType, u: &OrderUpdate<'_>) -> Result<(), ValidationError> {
    if u.order_id.is_nil() {
        return Err(ValidationError::invalid(
            "order_update.order_id",
            "must not be the nil UUID",
        ));
    }
    match (&u.reason, t) {
        (Some(reason), _) => check_text(reason).at(|| "order_update.reason".into())?,
        (None, EventType::OrderCanceled | EventType::OrderRefunded) => {
            return Err(ValidationError::missing("order_update.reason"));
        }
        (None, _) => {}
    }
    let refund = t == EventType::OrderRefunded;
    if refund && (u.refunds.is_empty() || u.refunds.len() > MAX_ORDER_LINES) {
        return Err(ValidationError::invalid(
            "order_update.refunds",
            format!("must hold 1 to {MAX_ORDER_LINES} lines (got {})", u.refunds.len()),
        ));
    }
    if !refund && !u.refunds.is_empty() {
        return Err(ValidationError::invalid(
            "order_update.refunds",
            format!("only an order_refunded event carries refunds (this is {t})"),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(u.refunds.len());
    for (i, r) in u.refunds.iter().enumerate() {
        let path = || format!("order_update.refunds[{i}]");
        if r.line_number == 0 || !seen.insert(r.line_number) {
            return Err(ValidationError::invalid(
                format!("{}.line_number", path()),
                format!("must name each order line once, from 1 (got {})", r.line_number),
            ));
        }
        check_quantity(r.quantity).at(|| format!("{}.quantity", path()))?;
        check_amount(r.amount, MAX_REFUND_LINE).at(|| format!("{}.amount", path()))?;
    }
    Ok(())
}

/// A broken rule, before the field path is attached. Paths are built only on
/// failure: validation runs for every message and must not allocate.
type Rule = Result<(), String>;

trait AtField {
    fn at(self, field: impl FnOnce() -> String) -> Result<(), ValidationError>;
}

impl AtField for Rule {
    fn at(self, field: impl FnOnce() -> String) -> Result<(), ValidationError> {
        self.map_err(|rule| ValidationError::InvalidValue { field: field(), rule })
    }
}

fn validate_customer(c: &Customer<'_>) -> Result<(), ValidationError> {
    check_text(&c.customer_id).at(|| "customer.customer_id".into())?;
    check_text(&c.name).at(|| "customer.name".into())?;
    check_text(&c.email).at(|| "customer.email".into())?;
    if !c.email.contains('@') {
        return Err(ValidationError::invalid("customer.email", "must contain `@`"));
    }
    check_text(&c.city).at(|| "customer.city".into())?;
    if c.country.len() != 2 || !c.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ValidationError::invalid(
            "customer.country",
            format!("must be a two-letter ISO 3166-1 code (got `{}`)", c.country),
        ));
    }
    check_text(&c.segment).at(|| "customer.segment".into())
}

/// Version 2's attributes of who shops and how: all present, and a birth
/// date that makes the customer between [`MIN_CUSTOMER_AGE`] and
/// [`MIN_BIRTH_YEAR`] at the event. Version 1 does not carry them.
fn validate_shopper(event: &Event<'_>) -> Result<(), ValidationError> {
    if event.schema_version < 2 {
        return Ok(());
    }
    let c = &event.customer;
    if c.gender.is_none() {
        return Err(ValidationError::missing("customer.gender"));
    }
    let birth = c
        .birth_date
        .ok_or_else(|| ValidationError::missing("customer.birth_date"))?;
    let latest = event
        .event_time
        .date_naive()
        .checked_sub_months(Months::new(MIN_CUSTOMER_AGE * 12));
    if birth.year() < MIN_BIRTH_YEAR || latest.is_none_or(|latest| birth > latest) {
        return Err(ValidationError::invalid(
            "customer.birth_date",
            format!(
                "must be in {MIN_BIRTH_YEAR} or later and at least {MIN_CUSTOMER_AGE} years before the event (got {birth})"
            ),
        ));
    }
    if event.device.is_none() {
        return Err(ValidationError::missing("device"));
    }
    if event.channel.is_none() {
        return Err(ValidationError::missing("channel"));
    }
    Ok(())
}

fn validate_product(path: &dyn Fn() -> String, p: &Product<'_>) -> Result<(), ValidationError> {
    check_text(&p.product_id).at(|| format!("{}.product_id", path()))?;
    check_text(&p.name).at(|| format!("{}.name", path()))?;
    check_text(&p.category).at(|| format!("{}.category", path()))?;
    check_text(&p.brand).at(|| format!("{}.brand", path()))?;
    check_money(p.list_price).at(|| format!("{}.list_price", path()))
}

fn validate_line(i: usize, line: &LineItem<'_>) -> Result<(), ValidationError> {
    let path = || format!("order.lines[{i}]");
    if line.line_number as usize != i + 1 {
        return Err(ValidationError::invalid(
            format!("{}.line_number", path()),
            format!(
                "must number lines 1..n in order (expected {}, got {})",
                i + 1,
                line.line_number
            ),
        ));
    }
    validate_product(&|| format!("{}.product", path()), &line.product)?;
    check_quantity(line.quantity).at(|| format!("{}.quantity", path()))?;
    check_money(line.unit_price).at(|| format!("{}.unit_price", path()))?;
    check_money(line.discount).at(|| format!("{}.discount", path()))?;
    if line.discount > line.line_total() {
        return Err(ValidationError::invalid(
            format!("{}.discount", path()),
            format!(
                "must not exceed the line total {} (got {})",
                line.line_total(),
                line.discount
            ),
        ));
    }
    Ok(())
}

fn check_quantity(quantity: i64) -> Rule {
    if quantity <= 0 {
        return Err(format!("must be greater than 0 (got {quantity})"));
    }
    if quantity > MAX_QUANTITY {
        return Err(format!("must be at most {MAX_QUANTITY} (got {quantity})"));
    }
    Ok(())
}

fn check_money(amount: Decimal) -> Rule {
    check_amount(amount, MAX_PRICE)
}

/// A non-negative amount of at most `max`, in whole cents.
fn check_amount(amount: Decimal, max: Decimal) -> Rule {
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(format!("must not be negative (got {amount})"));
    }
    if amount.normalize().scale() > MONEY_SCALE {
        return Err(format!(
            "must have at most {MONEY_SCALE} decimal places (got {amount})"
        ));
    }
    if amount > max {
        return Err(format!("must be at most {max} (got {amount})"));
    }
    Ok(())
}

fn check_text(value: &str) -> Rule {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if value.contains('\0') {
        // PostgreSQL text cannot hold NUL; reject it here, not at load time.
        return Err("must not contain NUL characters".into());
    }
    if value.len() > MAX_TEXT_LEN {
        return Err(format!(
            "must be at most {MAX_TEXT_LEN} bytes (got {})",
            value.len()
        ));
    }
    Ok(())
}

/// Turn a serde failure into the most useful typed error.
fn classify(text: &str, err: serde_path_to_error::Error<serde_json::Error>) -> ValidationError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let detail = message_without_position(&inner);
    if matches!(inner.classify(), Category::Syntax | Category::Eof | Category::Io) {
        return ValidationError::NotJson { detail };
    }
    // A payload of another schema version fails on its first unfamiliar field;
    // report the version, which is the real cause.
    if let Some(found) = foreign_schema_version(text) {
        return ValidationError::UnsupportedSchemaVersion { found };
    }
    if let Some(field) = detail
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return ValidationError::MissingField {
            field: join_path(&path, field),
        };
    }
    if path == "event_type"
        && let Some(found) = detail
            .strip_prefix("unknown variant `")
            .and_then(|rest| rest.split('`').next())
    {
        return ValidationError::UnknownEventType {
            found: found.to_string(),
        };
    }
    if path == "." {
        // The top-level value is not an object (e.g. a bare string or array).
        return ValidationError::WrongType {
            field: "(root)".to_string(),
            detail,
        };
    }
    ValidationError::WrongType { field: path, detail }
}

fn foreign_schema_version(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        schema_version: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_str(text).ok()?;
    match probe.schema_version? {
        serde_json::Value::Number(n)
            if n.as_u64()
                .is_some_and(|v| u32::try_from(v).is_ok_and(|v| READABLE_SCHEMA_VERSIONS.contains(&v))) =>
        {
            None
        }
        other => Some(other.to_string()),
    }
}

fn join_path(parent: &str, field: &str) -> String {
    if parent.is_empty() || parent == "." {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    }
}

/// serde_json appends " at line L column C"; the field path is more useful.
fn message_without_position(err: &serde_json::Error) -> String {
    let full = err.to_string();
    match full.rfind(" at line ") {
        Some(idx) => full[..idx].to_string(),
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn valid_purchase() -> Value {
        json!({
            "schema_version": 1,
            "event_id": "6f1f4b1e-2a8e-4f59-9d7a-0c4b8f1d2e3a",
            "event_type": "purchase",
            "event_time": "2026-11-30T05:10:35.123Z",
            "session_id": "0d7f3c1a-5b2e-4c8d-9e6f-1a2b3c4d5e6f",
            "customer": {
                "customer_id": "C0000042", "name": "Ada Lovelace", "email": "ada@example.com",
                "city": "London", "country": "GB", "segment": "consumer", "signup_date": "2024-03-01"
            },
            "order": {
                "order_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                "currency": "USD",
                "payment_method": "card",
                "lines": [
                    {"line_number": 1, "quantity": 2, "unit_price": "19.99", "discount": "4.00",
                     "product": {"product_id": "P000001", "name": "Acme Kettle", "category": "Home & Kitchen",
                                 "brand": "Acme", "list_price": "19.99"}},
                    {"line_number": 2, "quantity": 1, "unit_price": "5.00", "discount": "0",
                     "product": {"product_id": "P000002", "name": "Acme Mug", "category": "Home & Kitchen",
                                 "brand": "Acme", "list_price": "5.00"}}
                ]
            }
        })
    }

    /// Each (case, payload, kind, text) is rejected as `kind` with `text` in its message.
    fn assert_each_rejected<'a>(cases: impl IntoIterator<Item = (&'a str, Value, ErrorKind, &'a str)>) {
        for (name, payload, kind, needle) in cases {
            let err = parse_value(&payload).expect_err(name);
            assert_eq!(err.kind(), kind, "{name}: {err}");
            assert!(
                err.to_string().contains(needle),
                "{name}: `{err}` lacks `{needle}`"
            );
        }
    }

    fn parse_value(v: &Value) -> Result<(), ValidationError> {
        let bytes = serde_json::to_vec(v).unwrap();
        parse_event(&bytes).map(|_| ())
    }

    fn with(mut v: Value, pointer: &str, new: Value) -> Value {
        *v.pointer_mut(pointer).expect("pointer exists") = new;
        v
    }

    fn without(mut v: Value, parent: &str, key: &str) -> Value {
        v.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .expect("parent exists")
            .remove(key);
        v
    }

    #[test]
    fn accepts_a_valid_purchase_and_keeps_money_exact() {
        let bytes = serde_json::to_vec(&valid_purchase()).unwrap();
        let event = parse_event(&bytes).unwrap();
        let order = event.order.unwrap();
        assert_eq!(order.units(), 3);
        assert_eq!(order.gross().to_string(), "44.98");
        assert_eq!(order.discount().to_string(), "4.00");
    }

    #[test]
    fn rejects_each_kind_of_bad_input_with_the_field_and_rule() {
        let base = valid_purchase();
        let cases: Vec<(&str, Vec<u8>, ErrorKind, &str)> = vec![
            (
                "not utf-8",
                b"{\"a\":\"\xff\"}".to_vec(),
                ErrorKind::NotUtf8,
                "offset 6",
            ),
            (
                "not json",
                b"{\"schema_version\":1,".to_vec(),
                ErrorKind::NotJson,
                "not valid JSON",
            ),
            (
                "garbage",
                b"hello world".to_vec(),
                ErrorKind::NotJson,
                "not valid JSON",
            ),
            (
                "trailing",
                [serde_json::to_vec(&base).unwrap(), b" x".to_vec()].concat(),
                ErrorKind::NotJson,
                "trailing",
            ),
            (
                "root string",
                b"\"hello\"".to_vec(),
                ErrorKind::WrongType,
                "(root)",
            ),
            (
                "missing event_id",
                serde_json::to_vec(&without(base.clone(), "", "event_id")).unwrap(),
                ErrorKind::MissingField,
                "`event_id`",
            ),
            (
                "missing nested email",
                serde_json::to_vec(&without(base.clone(), "/customer", "email")).unwrap(),
                ErrorKind::MissingField,
                "`customer.email`",
            ),
            (
                "missing order for purchase",
                serde_json::to_vec(&without(base.clone(), "", "order")).unwrap(),
                ErrorKind::MissingField,
                "`order`",
            ),
            (
                "wrong type quantity",
                serde_json::to_vec(&with(base.clone(), "/order/lines/1/quantity", json!("two"))).unwrap(),
                ErrorKind::WrongType,
                "`order.lines[1].quantity`",
            ),
            (
                "money as float",
                serde_json::to_vec(&with(base.clone(), "/order/lines/0/unit_price", json!(19.99))).unwrap(),
                ErrorKind::WrongType,
                "`order.lines[0].unit_price`",
            ),
            (
                "bad timestamp",
                serde_json::to_vec(&with(base.clone(), "/event_time", json!("yesterday"))).unwrap(),
                ErrorKind::WrongType,
                "`event_time`",
            ),
            (
                "negative quantity",
                serde_json::to_vec(&with(base.clone(), "/order/lines/0/quantity", json!(-2))).unwrap(),
                ErrorKind::InvalidValue,
                "`order.lines[0].quantity` must be greater than 0 (got -2)",
            ),
            (
                "discount above total",
                serde_json::to_vec(&with(base.clone(), "/order/lines/1/discount", json!("6.00"))).unwrap(),
                ErrorKind::InvalidValue,
                "must not exceed the line total",
            ),
            (
                "sub-cent money",
                serde_json::to_vec(&with(base.clone(), "/order/lines/1/unit_price", json!("5.001"))).unwrap(),
                ErrorKind::InvalidValue,
                "at most 2 decimal places",
            ),
            (
                // Passed before: its line total overflowed numeric(18,2) at load time.
                "price whose line total overflows the warehouse",
                serde_json::to_vec(&with(
                    base.clone(),
                    "/order/lines/0/unit_price",
                    json!("9999999999999999.99"),
                ))
                .unwrap(),
                ErrorKind::InvalidValue,
                "must be at most 1000000.00",
            ),
            (
                "list price above the bound",
                serde_json::to_vec(&with(
                    base.clone(),
                    "/order/lines/1/product/list_price",
                    json!("1000000.01"),
                ))
                .unwrap(),
                ErrorKind::InvalidValue,
                "`order.lines[1].product.list_price` must be at most",
            ),
            (
                "unknown event type",
                serde_json::to_vec(&with(base.clone(), "/event_type", json!("refund"))).unwrap(),
                ErrorKind::UnknownEventType,
                "`refund`",
            ),
            (
                "future schema version",
                serde_json::to_vec(&with(base.clone(), "/schema_version", json!(99))).unwrap(),
                ErrorKind::UnsupportedSchemaVersion,
                "schema_version 99",
            ),
            (
                "future schema with another shape",
                br#"{"schema_version":3,"id":"x","payload":{}}"#.to_vec(),
                ErrorKind::UnsupportedSchemaVersion,
                "schema_version 3",
            ),
            (
                "NUL in text",
                serde_json::to_vec(&with(base.clone(), "/customer/name", json!("Ada\u{0}"))).unwrap(),
                ErrorKind::InvalidValue,
                "`customer.name` must not contain NUL",
            ),
            (
                "clock bug",
                serde_json::to_vec(&with(base.clone(), "/event_time", json!("1970-01-01T00:00:00Z")))
                    .unwrap(),
                ErrorKind::InvalidValue,
                "`event_time` must fall in the years 2000 to 2099",
            ),
            (
                "bad country",
                serde_json::to_vec(&with(base.clone(), "/customer/country", json!("Britain"))).unwrap(),
                ErrorKind::InvalidValue,
                "`customer.country`",
            ),
            (
                "no lines",
                serde_json::to_vec(&with(base.clone(), "/order/lines", json!([]))).unwrap(),
                ErrorKind::InvalidValue,
                "`order.lines` must hold 1",
            ),
            (
                "lines out of order",
                serde_json::to_vec(&with(base.clone(), "/order/lines/1/line_number", json!(5))).unwrap(),
                ErrorKind::InvalidValue,
                "expected 2, got 5",
            ),
        ];
        for (name, bytes, kind, needle) in cases {
            let err = parse_event(&bytes).expect_err(name);
            assert_eq!(err.kind(), kind, "{name}: {err}");
            assert!(
                err.to_string().contains(needle),
                "{name}: `{err}` lacks `{needle}`"
            );
        }
    }

    #[test]
    fn version_2_requires_who_shops_and_how_and_version_1_still_reads() {
        let v1 = valid_purchase();
        assert_eq!(parse_value(&v1), Ok(()), "version 1 without the attributes");
        let mut v2 = with(v1, "/schema_version", json!(2));
        v2["customer"]["gender"] = json!("female");
        v2["customer"]["birth_date"] = json!("1990-05-17");
        v2["device"] = json!("smart_tv");
        v2["channel"] = json!("paid_search");
        let event = serde_json::to_vec(&v2).unwrap();
        let parsed = parse_event(&event).expect("a valid version 2 purchase");
        assert_eq!(parsed.device, Some(crate::Device::SmartTv));
        assert_eq!(parsed.customer.gender, Some(crate::Gender::Female));
        // (case, payload, kind, text)
        let cases = [
            (
                "no gender",
                without(v2.clone(), "/customer", "gender"),
                ErrorKind::MissingField,
                "`customer.gender`",
            ),
            (
                "no birth date",
                without(v2.clone(), "/customer", "birth_date"),
                ErrorKind::MissingField,
                "`customer.birth_date`",
            ),
            (
                "no device",
                without(v2.clone(), "", "device"),
                ErrorKind::MissingField,
                "`device`",
            ),
            (
                "no channel",
                without(v2.clone(), "", "channel"),
                ErrorKind::MissingField,
                "`channel`",
            ),
            (
                "a child",
                with(v2.clone(), "/customer/birth_date", json!("2020-01-01")),
                ErrorKind::InvalidValue,
                "at least 13 years before the event",
            ),
            (
                "a form default",
                with(v2.clone(), "/customer/birth_date", json!("1800-01-01")),
                ErrorKind::InvalidValue,
                "`customer.birth_date` must be in 1900 or later",
            ),
            (
                "unknown device",
                with(v2.clone(), "/device", json!("fridge")),
                ErrorKind::WrongType,
                "`fridge`",
            ),
            (
                "unknown gender",
                with(v2.clone(), "/customer/gender", json!("robot")),
                ErrorKind::WrongType,
                "customer.gender",
            ),
        ];
        assert_each_rejected(cases);
    }

    #[test]
    fn order_status_changes_name_the_order_and_refunds_their_lines() {
        let base = without(valid_purchase(), "", "order");
        let mut v2 = with(base, "/schema_version", json!(2));
        v2["customer"]["gender"] = json!("male");
        v2["customer"]["birth_date"] = json!("1980-01-01");
        v2["device"] = json!("pc");
        v2["channel"] = json!("direct");
        let order = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
        let status = |t: &str, update: Value| {
            let mut v = v2.clone();
            v["event_type"] = json!(t);
            v["order_update"] = update;
            v
        };
        let refund = status(
            "order_refunded",
            json!({"order_id": order, "reason": "damaged",
                   "refunds": [{"line_number": 1, "quantity": 1, "amount": "19.99"},
                               {"line_number": 2, "quantity": 1, "amount": "5.00"}]}),
        );
        let bytes = serde_json::to_vec(&refund).unwrap();
        let parsed = parse_event(&bytes).expect("a valid refund");
        let u = parsed.order_update.as_ref().unwrap();
        assert_eq!(u.refunded_amount(), Decimal::new(2499, 2));
        assert_eq!(u.refunded_units(), 2);
        assert_eq!(
            parse_value(&status("order_completed", json!({"order_id": order}))),
            Ok(())
        );
        let cases = [
            (
                "no update",
                without(refund.clone(), "", "order_update"),
                ErrorKind::MissingField,
                "`order_update`",
            ),
            (
                "a cancellation without a reason",
                status("order_canceled", json!({"order_id": order})),
                ErrorKind::MissingField,
                "`order_update.reason`",
            ),
            (
                "a refund of nothing",
                with(refund.clone(), "/order_update/refunds", json!([])),
                ErrorKind::InvalidValue,
                "`order_update.refunds` must hold 1",
            ),
            (
                "a line refunded twice",
                with(refund.clone(), "/order_update/refunds/1/line_number", json!(1)),
                ErrorKind::InvalidValue,
                "must name each order line once",
            ),
            (
                "a negative refund",
                with(refund.clone(), "/order_update/refunds/0/amount", json!("-1.00")),
                ErrorKind::InvalidValue,
                "`order_update.refunds[0].amount` must not be negative",
            ),
            (
                "refund lines on a completion",
                status("order_completed", refund["order_update"].clone()),
                ErrorKind::InvalidValue,
                "only an order_refunded event carries refunds",
            ),
            (
                "a nil order",
                with(refund.clone(), "/order_update/order_id", json!(uuid::Uuid::nil())),
                ErrorKind::InvalidValue,
                "`order_update.order_id`",
            ),
            (
                "a status change in version 1",
                with(refund.clone(), "/schema_version", json!(1)),
                ErrorKind::InvalidValue,
                "needs schema_version 2",
            ),
        ];
        assert_each_rejected(cases);
    }

    #[test]
    fn product_events_need_their_product_and_quantity() {
        let base = valid_purchase();
        let product = base["order"]["lines"][0]["product"].clone();
        let mut view = without(base, "", "order");
        view["event_type"] = json!("page_view");
        view["product"] = product;
        assert_eq!(parse_value(&view), Ok(()));

        let mut cart = view.clone();
        cart["event_type"] = json!("add_to_cart");
        let err = parse_value(&cart).unwrap_err();
        assert_eq!(err, ValidationError::missing("quantity"));
        cart["quantity"] = json!(0);
        assert_eq!(parse_value(&cart).unwrap_err().kind(), ErrorKind::InvalidValue);
        cart["quantity"] = json!(2);
        assert_eq!(parse_value(&cart), Ok(()));

        let no_product = without(view, "", "product");
        assert_eq!(
            parse_value(&no_product).unwrap_err(),
            ValidationError::missing("product")
        );
    }

    #[test]
    fn unknown_extra_fields_are_tolerated_for_forward_compatibility() {
        let mut v = valid_purchase();
        v["campaign"] = json!("black-friday");
        assert_eq!(parse_value(&v), Ok(()));
    }
}
