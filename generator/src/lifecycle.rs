//! What happens to an order after checkout: it is canceled before it
//! completes, or it completes and is later refunded in full or in part, or
//! it completes and stays so. The fate is drawn when the order is placed; its
//! steps wait in a queue until they are due (exponential delays with the
//! configured means), one step per order at a time.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use rand_distr::weighted::WeightedIndex;
use rand_distr::{Distribution, Exp};
use rust_decimal::{Decimal, RoundingStrategy};
use shopstream_model::{Channel, Device, Order, RefundLine};
use uuid::Uuid;

/// How orders fare, with defaults from published retail figures:
/// - refunds: NRF and Appriss Retail, "2023 Consumer Returns in the Retail
///   Industry", put returns of online sales at 17.6%; we refund 17% of
///   completed orders (about half of them in full).
/// - cancellations: a few percent of online orders are canceled before they
///   ship (retailers' order-management reports commonly give 2-5%); 3%.
///
/// The delays compress the real timeline (days to ship, weeks to return) to
/// minutes, so a live run shows every status; set them to real values for a
/// soak run.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleRates {
    /// Share of placed orders canceled before completion.
    pub cancel_ratio: f64,
    /// Share of completed orders later refunded.
    pub refund_ratio: f64,
    /// Mean time from placing to cancellation.
    pub cancel_after: Duration,
    /// Mean time from placing to completion.
    pub complete_after: Duration,
    /// Mean time from completion to refund.
    pub refund_after: Duration,
}

impl Default for LifecycleRates {
    fn default() -> Self {
        Self {
            cancel_ratio: 0.03,
            refund_ratio: 0.17,
            cancel_after: Duration::from_secs(5 * 60),
            complete_after: Duration::from_secs(15 * 60),
            refund_after: Duration::from_secs(30 * 60),
        }
    }
}

/// Why shoppers cancel and return, roughly in the order surveys rank them.
const CANCEL_REASONS: &[(&str, u32)] = &[
    ("changed_mind", 35),
    ("found_cheaper", 20),
    ("shipping_too_slow", 18),
    ("payment_failed", 15),
    ("out_of_stock", 12),
];
const REFUND_REASONS: &[(&str, u32)] = &[
    ("wrong_size", 30),
    ("not_as_described", 25),
    ("damaged", 20),
    ("no_longer_needed", 15),
    ("arrived_late", 10),
];
/// Share of refunds that return the whole order.
const FULL_REFUND_SHARE: f64 = 0.5;
/// Delays are capped at this many times their mean (an exponential's tail
/// would otherwise keep the odd order pending for a whole day).
const MAX_DELAY_MEANS: f64 = 8.0;

/// Who placed an order: its later events carry the same customer, session,
/// device and channel (and so go to the same partition).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placer {
    pub customer: usize,
    pub session_id: Uuid,
    pub device: Device,
    pub channel: Channel,
}

/// A step of an order's life, due now.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    pub order_id: Uuid,
    pub placer: Placer,
    pub step: Step,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `booked` is the order's net amount (the summary's canceled money).
    Cancel {
        reason: &'static str,
        booked: Decimal,
    },
    Complete,
    Refund {
        reason: &'static str,
        lines: Vec<RefundLine>,
    },
}

/// What follows a completion.
#[derive(Debug, Clone, PartialEq)]
struct PlannedRefund {
    after: Duration,
    reason: &'static str,
    lines: Vec<RefundLine>,
}

#[derive(Debug)]
struct Scheduled {
    due: DateTime<Utc>,
    seq: u64,
    follow_up: FollowUp,
    then: Option<PlannedRefund>,
}

// A min-heap on (due, seq): the earliest step first, ties in the order scheduled.
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Scheduled {}

pub struct Lifecycle {
    rates: LifecycleRates,
    cancel_reason: WeightedIndex<u32>,
    refund_reason: WeightedIndex<u32>,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    /// Orders whose remaining steps must not be emitted (see [`Lifecycle::forget`]).
    forgotten: HashSet<Uuid>,
    /// The order whose next step the last emitted event scheduled.
    last_scheduled: Option<Uuid>,
}

impl Lifecycle {
    pub fn new(rates: LifecycleRates) -> Self {
        Self {
            rates,
            cancel_reason: WeightedIndex::new(CANCEL_REASONS.iter().map(|r| r.1)).expect("static weights"),
            refund_reason: WeightedIndex::new(REFUND_REASONS.iter().map(|r| r.1)).expect("static weights"),
            queue: BinaryHeap::new(),
            seq: 0,
            forgotten: HashSet::new(),
            last_scheduled: None,
        }
    }

    /// Draw the fate of an order placed at `now` and schedule its first step.
    pub fn placed<R: Rng>(&mut self, rng: &mut R, now: DateTime<Utc>, order: &Order<'_>, placer: Placer) {
        let r = &self.rates;
        let (after, step, then) = if rng.random_bool(r.cancel_ratio) {
            let reason = CANCEL_REASONS[self.cancel_reason.sample(rng)].0;
            let booked = order.gross() - order.discount();
            (delay(rng, r.cancel_after), Step::Cancel { reason, booked }, None)
        } else {
            let refund = rng.random_bool(r.refund_ratio).then(|| PlannedRefund {
                after: delay(rng, r.refund_after),
                reason: REFUND_REASONS[self.refund_reason.sample(rng)].0,
                lines: refund_lines(rng, order),
            });
            (delay(rng, r.complete_after), Step::Complete, refund)
        };
        self.schedule(
            now,
            after,
            FollowUp {
                order_id: order.order_id,
                placer,
                step,
            },
            then,
        );
    }

    /// The earliest step due at `now`, if any. Taking a completion schedules
    /// its refund, if the order has one.
    pub fn due(&mut self, now: DateTime<Utc>) -> Option<FollowUp> {
        self.last_scheduled = None;
        while self.queue.peek().is_some_and(|s| s.due <= now) {
            let Some(s) = self.queue.pop() else { break };
            if self.forgotten.remove(&s.follow_up.order_id) {
                continue;
            }
            if let Some(refund) = s.then {
                let follow_up = FollowUp {
                    step: Step::Refund {
                        reason: refund.reason,
                        lines: refund.lines,
                    },
                    ..s.follow_up.clone()
                };
                self.schedule(now, refund.after, follow_up, None);
            }
            return Some(s.follow_up);
        }
        None
    }

    /// The event just taken was not delivered as itself (the run replaced it
    /// with an invalid message): the order's later steps would describe an
    /// order the warehouse never saw placed or completed, so drop them.
    pub fn forget(&mut self, order_id: Uuid) {
        if self.last_scheduled == Some(order_id) {
            self.forgotten.insert(order_id);
        }
    }

    /// Steps waiting (bounded by the order rate times the longest delays).
    pub fn scheduled(&self) -> usize {
        self.queue.len()
    }

    fn schedule(
        &mut self,
        now: DateTime<Utc>,
        after: Duration,
        follow_up: FollowUp,
        then: Option<PlannedRefund>,
    ) {
        let due = now + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
        self.last_scheduled = Some(follow_up.order_id);
        self.seq += 1;
        self.queue.push(Scheduled {
            due,
            seq: self.seq,
            follow_up,
            then,
        });
    }
}

/// An exponential delay with this mean, capped (zero mean: at once).
fn delay<R: Rng>(rng: &mut R, mean: Duration) -> Duration {
    let mean = mean.as_secs_f64();
    if mean <= 0.0 {
        return Duration::ZERO;
    }
    let exp = Exp::new(1.0 / mean).expect("a positive rate");
    Duration::from_secs_f64(exp.sample(rng).min(mean * MAX_DELAY_MEANS))
}

/// The whole order, or some units of some of its lines, each refunded at
/// the price paid for it (its share of the line's net amount).
fn refund_lines<R: Rng>(rng: &mut R, order: &Order<'_>) -> Vec<RefundLine> {
    let full = rng.random_bool(FULL_REFUND_SHARE);
    let mut lines = Vec::with_capacity(order.lines.len());
    for l in &order.lines {
        if !full && !rng.random_bool(0.5) {
            continue;
        }
        let quantity = if full {
            l.quantity
        } else {
            rng.random_range(1..=l.quantity)
        };
        lines.push(RefundLine {
            line_number: l.line_number,
            quantity,
            amount: refund_amount(l.net_amount(), quantity, l.quantity),
        });
    }
    if lines.is_empty() {
        let l = &order.lines[rng.random_range(0..order.lines.len())];
        lines.push(RefundLine {
            line_number: l.line_number,
            quantity: 1,
            amount: refund_amount(l.net_amount(), 1, l.quantity),
        });
    }
    lines
}

/// `quantity` of `of` units of a line that cost `net`, to the cent.
fn refund_amount(net: Decimal, quantity: i64, of: i64) -> Decimal {
    if quantity == of {
        return net;
    }
    (net * Decimal::from(quantity) / Decimal::from(of))
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;
    use rust_decimal::dec;
    use shopstream_model::{LineItem, Product};

    fn order(id: u128, lines: &[(i64, Decimal, Decimal)]) -> Order<'static> {
        Order {
            order_id: Uuid::from_u128(id),
            currency: "USD".into(),
            payment_method: "card".into(),
            lines: lines
                .iter()
                .enumerate()
                .map(|(i, &(quantity, unit_price, discount))| LineItem {
                    line_number: i as u32 + 1,
                    product: Product {
                        product_id: format!("P{i}").into(),
                        name: "n".into(),
                        category: "c".into(),
                        brand: "b".into(),
                        list_price: unit_price,
                    },
                    quantity,
                    unit_price,
                    discount,
                })
                .collect(),
        }
    }

    fn placer() -> Placer {
        Placer {
            customer: 0,
            session_id: Uuid::nil(),
            device: Device::Mobile,
            channel: Channel::Direct,
        }
    }

    #[test]
    fn refunds_are_shares_of_what_was_paid() {
        let cases = [
            (dec!(30.00), 1, 3, dec!(10.00)),
            (dec!(10.00), 1, 3, dec!(3.33)),
            (dec!(10.00), 2, 3, dec!(6.67)),
            (dec!(9.99), 2, 2, dec!(9.99)),
            (dec!(0.01), 1, 2, dec!(0.01)),
        ];
        for (net, q, of, want) in cases {
            assert_eq!(refund_amount(net, q, of), want, "{q} of {of} at {net}");
        }
    }

    /// Place many orders, then walk the clock forward and take every step.
    #[test]
    fn rates_and_delays_are_as_configured_and_steps_come_in_order() {
        let rates = LifecycleRates {
            cancel_ratio: 0.1,
            refund_ratio: 0.2,
            cancel_after: Duration::from_secs(60),
            complete_after: Duration::from_secs(120),
            refund_after: Duration::from_secs(300),
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let mut life = Lifecycle::new(rates.clone());
        let t0: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
        let n = 20_000u128;
        let o = |i| order(i, &[(3, dec!(10.00), dec!(1.50)), (1, dec!(4.99), dec!(0))]);
        for i in 0..n {
            life.placed(&mut rng, t0, &o(i), placer());
        }
        let mut steps: Vec<(DateTime<Utc>, FollowUp)> = Vec::new();
        let mut now = t0;
        while life.scheduled() > 0 {
            now += chrono::Duration::seconds(1);
            while let Some(f) = life.due(now) {
                steps.push((now, f));
            }
        }
        let count = |pick: fn(&Step) -> bool| steps.iter().filter(|(_, f)| pick(&f.step)).count() as f64;
        let (cancels, completes, refunds) = (
            count(|s| matches!(s, Step::Cancel { .. })),
            count(|s| matches!(s, Step::Complete)),
            count(|s| matches!(s, Step::Refund { .. })),
        );
        assert_eq!(
            cancels + completes,
            n as f64,
            "every order is canceled or completed"
        );
        assert!(
            (cancels / n as f64 - 0.1).abs() < 0.01,
            "cancel share {}",
            cancels / n as f64
        );
        assert!(
            (refunds / completes - 0.2).abs() < 0.015,
            "refund share {}",
            refunds / completes
        );
        let mean_delay = |pick: fn(&Step) -> bool| {
            let d: Vec<f64> = steps
                .iter()
                .filter(|(_, f)| pick(&f.step))
                .map(|(t, _)| (*t - t0).num_seconds() as f64)
                .collect();
            d.iter().sum::<f64>() / d.len() as f64
        };
        let cancel_mean = mean_delay(|s| matches!(s, Step::Cancel { .. }));
        let complete_mean = mean_delay(|s| matches!(s, Step::Complete));
        assert!((50.0..70.0).contains(&cancel_mean), "cancel delay {cancel_mean}");
        assert!(
            (110.0..130.0).contains(&complete_mean),
            "completion delay {complete_mean}"
        );
        // A refund comes after its completion, about refund_after later.
        let mut completed_at = std::collections::HashMap::new();
        let mut gaps = Vec::new();
        for (t, f) in &steps {
            match &f.step {
                Step::Complete => {
                    completed_at.insert(f.order_id, *t);
                }
                Step::Refund { lines, reason } => {
                    let done = completed_at.get(&f.order_id).expect("refunded after completion");
                    gaps.push((*t - *done).num_seconds() as f64);
                    assert!(REFUND_REASONS.iter().any(|r| r.0 == *reason));
                    let order = o(0);
                    for l in lines {
                        let line = &order.lines[l.line_number as usize - 1];
                        assert!((1..=line.quantity).contains(&l.quantity));
                        assert!(l.amount > Decimal::ZERO && l.amount <= line.net_amount());
                    }
                }
                Step::Cancel { booked, reason } => {
                    assert_eq!(*booked, dec!(33.49));
                    assert!(CANCEL_REASONS.iter().any(|r| r.0 == *reason));
                }
            }
        }
        let gap = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((270.0..330.0).contains(&gap), "refund delay {gap}");
        let full = steps
            .iter()
            .filter(|(_, f)| matches!(&f.step, Step::Refund { lines, .. } if lines.iter().map(|l| l.amount).sum::<Decimal>() == dec!(33.49)))
            .count() as f64;
        assert!(
            (0.4..0.65).contains(&(full / refunds)),
            "full refunds {}",
            full / refunds
        );
    }

    #[test]
    fn a_forgotten_order_takes_no_more_steps() {
        let rates = LifecycleRates {
            cancel_ratio: 0.0,
            refund_ratio: 1.0,
            cancel_after: Duration::ZERO,
            complete_after: Duration::ZERO,
            refund_after: Duration::ZERO,
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut life = Lifecycle::new(rates);
        let t0 = Utc::now();
        let (a, b) = (
            order(1, &[(1, dec!(5), dec!(0))]),
            order(2, &[(1, dec!(5), dec!(0))]),
        );
        life.placed(&mut rng, t0, &a, placer());
        life.forget(a.order_id); // its purchase became an invalid message
        life.placed(&mut rng, t0, &b, placer());
        let first = life.due(t0).expect("b completes");
        assert_eq!((first.order_id, &first.step), (b.order_id, &Step::Complete));
        life.forget(b.order_id); // its completion became an invalid message: no refund
        assert_eq!(life.due(t0), None);
        assert_eq!(life.scheduled(), 0);
        life.forget(a.order_id); // nothing scheduled by the last event: nothing to forget
        assert!(life.forgotten.is_empty());
    }
}
