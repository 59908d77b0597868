//! The worker's one retry policy.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

/// Exponential backoff with jitter, 200 ms to 10 s, never giving up: for
/// reaching the warehouse at start-up, reconnecting, and retrying a failed
/// batch.
pub struct Retry {
    backoff: Box<dyn Iterator<Item = Duration> + Send>,
    not_before: Instant,
}

impl Retry {
    pub fn new() -> Self {
        Self {
            backoff: Box::new(Self::builder().build()),
            not_before: Instant::now(),
        }
    }

    fn builder() -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_jitter()
            .without_max_times()
    }

    /// Another failure: how long to wait before the next try.
    pub fn failed(&mut self) -> Duration {
        let wait = self.backoff.next().unwrap_or(Duration::from_secs(10));
        self.not_before = Instant::now() + wait;
        wait
    }

    /// A success: the next failure waits the shortest time again.
    pub fn succeeded(&mut self) {
        self.backoff = Box::new(Self::builder().build());
        self.not_before = Instant::now();
    }

    /// Whether the wait after the last failure is over.
    pub fn due(&self) -> bool {
        Instant::now() >= self.not_before
    }
}

impl Default for Retry {
    fn default() -> Self {
        Self::new()
    }
}
