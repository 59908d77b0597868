//! Phase 4, the desired state (pure): from the counts of the control step,
//! every object the Pipeline should have, in one value that the apply phase
//! puts in place and the status phase reports on.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use shopstream_model::{Pipeline, PipelineSpec};

use super::RESYNC;
use crate::builders;
use crate::control::{self, Counts, WorkerCount};
use crate::generator_plan::GeneratorPlan;

/// What one pass wants in place.
pub(super) struct Desired {
    pub plan: GeneratorPlan,
    pub workers: WorkerCount,
    pub generator: Deployment,
    pub worker: Deployment,
    /// The dashboard's Deployment and Service (`None`: disabled).
    pub dashboard: Option<(Deployment, Service)>,
}

impl Desired {
    pub fn new(p: &Pipeline, image: &str, counts: &Counts, profile_start: Option<DateTime<Utc>>) -> Self {
        let Counts { plan, workers } = counts.clone();
        Desired {
            generator: builders::generator_deployment(p, plan.replicas as i32, image, profile_start),
            worker: builders::worker_deployment(p, workers.replicas as i32, image),
            dashboard: p.spec.dashboard.enabled.then(|| {
                (
                    builders::dashboard_deployment(p, image),
                    builders::dashboard_service(p),
                )
            }),
            plan,
            workers,
        }
    }

    /// Look again at the next stage boundary, scaler tick or resync.
    pub fn next_look(&self, spec: &PipelineSpec, scale_interval: Duration) -> Duration {
        let mut next = RESYNC;
        if let Some(recheck) = self.plan.recheck_after {
            next = next.min(recheck);
        }
        if control::autoscaled(spec) {
            next = next.min(scale_interval);
        }
        next
    }
}
