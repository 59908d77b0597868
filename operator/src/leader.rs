//! Leader election on a `coordination.k8s.io/v1` Lease, so several operator
//! replicas can run and only one reconciles. Updates use the Lease's
//! resourceVersion, so two candidates can never both win the same term.
//!
//! As in client-go: a candidate judges expiry by its own monotonic clock (the
//! record must stay unchanged for a whole lease duration since it first saw
//! it), never by comparing the holder's remote timestamp with a local wall
//! clock that may be skewed; and the leader stops acting once it could not
//! renew within [`renew_deadline`], which is shorter than the lease duration,
//! so it has stopped before anyone may take over.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The last lease record seen (holder and renew time) and when we first saw it.
    observed: Mutex<Option<(String, Instant)>>,
}

/// How long a leader may go without renewing before it must stop acting:
/// two thirds of the lease duration (client-go: 10 s of 15 s).
pub fn renew_deadline(lease_duration: Duration) -> Duration {
    lease_duration * 2 / 3
}

/// May `me` take a lease held by `holder` whose record has not changed for
/// `unchanged_for` (by our own clock)?
pub fn may_take(holder: Option<&str>, me: &str, unchanged_for: Duration, term: Duration) -> bool {
    match holder {
        None => true,
        Some(h) if h == me => true,
        Some(_) => unchanged_for >= term,
    }
}

/// Who holds the lease, as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Held,
    HeldBy(String),
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaseLock {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
            observed: Mutex::new(None),
        }
    }

    /// How long the record `key` has been unchanged, by our clock.
    fn unchanged_for(&self, key: String) -> Duration {
        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        match observed.as_ref() {
            Some((seen, since)) if *seen == key => since.elapsed(),
            _ => {
                *observed = Some((key, Instant::now()));
                Duration::ZERO
            }
        }
    }

    /// Take the lease if it is free, expired or ours (renewing it).
    pub async fn try_acquire(&self) -> Result<Claim, kube::Error> {
        let now = Timestamp::now();
        let seconds = self.duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Claim::Held),
                Err(e) if conflict(&e) => Ok(Claim::HeldBy("another candidate".into())),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.identity.as_str());
        let term = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(seconds).max(1) as u64);
        let key = format!("{holder:?}@{:?}", spec.renew_time.as_ref().map(|t| t.0));
        let unchanged_for = self.unchanged_for(key);
        if !may_take(holder.as_deref(), &self.identity, unchanged_for, term) {
            return Ok(Claim::HeldBy(holder.unwrap_or_default()));
        }
        if !ours {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.acquire_time = Some(MicroTime(now));
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        // `replace` carries the resourceVersion we read: a concurrent writer wins, we retry.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(Claim::Held),
            Err(e) if conflict(&e) => Ok(Claim::HeldBy("another candidate".into())),
            Err(e) => Err(e),
        }
    }

    /// Give the lease up on shutdown so a standby takes over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            Err(e) if conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_taken_only_when_free_ours_or_unchanged_for_a_term() {
        let term = Duration::from_secs(15);
        // (holder, unchanged for, may take)
        for (holder, unchanged, expected) in [
            (None, 0, true),
            (Some("me"), 0, true),
            (Some("other"), 0, false),
            (Some("other"), 14, false),
            (Some("other"), 15, true),
            (Some("other"), 60, true),
        ] {
            assert_eq!(
                may_take(holder, "me", Duration::from_secs(unchanged), term),
                expected,
                "{holder:?} unchanged for {unchanged}s"
            );
        }
    }

    #[test]
    fn the_leader_gives_up_before_a_standby_may_take_over() {
        for secs in [3, 6, 15, 60] {
            let term = Duration::from_secs(secs);
            assert!(renew_deadline(term) < term);
            // Renewals every third of a term leave room for one failed attempt.
            assert!(renew_deadline(term) > term / 3);
        }
    }
}
