//! The Pipeline's condition types and reasons as enums: one spelling of
//! each, and a reason can only belong to the verdicts that produce it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use shopstream_model::pipeline::PipelineStatus;

/// The standard conditions a Pipeline reports, in the order they are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ready,
    TopicReady,
    GeneratorReady,
    WorkersReady,
    Scaling,
    /// Informational: whether each component holds only the warehouse rights
    /// it needs; not part of Ready.
    LeastPrivilege,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Ready => "Ready",
            Kind::TopicReady => "TopicReady",
            Kind::GeneratorReady => "GeneratorReady",
            Kind::WorkersReady => "WorkersReady",
            Kind::Scaling => "Scaling",
            Kind::LeastPrivilege => "LeastPrivilege",
        }
    }
}

/// Why a condition has its status (the `reason` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    // Ready
    Running,
    Paused,
    InvalidSpec,
    // TopicReady
    TopicReady,
    CannotShrink,
    CannotGrow,
    KafkaUnavailable,
    // GeneratorReady and WorkersReady
    Disabled,
    ProfileFinished,
    ScaledToZero,
    Available,
    Progressing,
    // Scaling
    ScalingUp,
    ScalingDown,
    Stable,
    AutoscalingDisabled,
    // LeastPrivilege
    SeparateRoles,
    SharedCredentials,
}

impl Reason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Running => "Running",
            Reason::Paused => "Paused",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::TopicReady => "TopicReady",
            Reason::CannotShrink => "CannotShrink",
            Reason::CannotGrow => "CannotGrow",
            Reason::KafkaUnavailable => "KafkaUnavailable",
            Reason::Disabled => "Disabled",
            Reason::ProfileFinished => "ProfileFinished",
            Reason::ScaledToZero => "ScaledToZero",
            Reason::Available => "Available",
            Reason::Progressing => "Progressing",
            Reason::ScalingUp => "ScalingUp",
            Reason::ScalingDown => "ScalingDown",
            Reason::Stable => "Stable",
            Reason::AutoscalingDisabled => "AutoscalingDisabled",
            Reason::SeparateRoles => "SeparateRoles",
            Reason::SharedCredentials => "SharedCredentials",
        }
    }
}

/// One condition as decided, before it meets the previous status.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub kind: Kind,
    pub ok: bool,
    pub reason: Reason,
    pub message: String,
}

impl Verdict {
    pub fn new(kind: Kind, ok: bool, reason: Reason, message: impl Into<String>) -> Self {
        Verdict {
            kind,
            ok,
            reason,
            message: message.into(),
        }
    }

    /// The API condition; it keeps the previous lastTransitionTime unless its
    /// status flips.
    pub fn condition(
        self,
        previous: Option<&PipelineStatus>,
        generation: Option<i64>,
        now: &Time,
    ) -> Condition {
        let status = if self.ok { "True" } else { "False" };
        let since = find(previous, self.kind)
            .filter(|c| c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        Condition {
            type_: self.kind.as_str().into(),
            status: status.into(),
            reason: self.reason.as_str().into(),
            message: self.message,
            observed_generation: generation,
            last_transition_time: since,
        }
    }
}

/// The condition of `kind` in a status, if it has one.
pub fn find(status: Option<&PipelineStatus>, kind: Kind) -> Option<&Condition> {
    status?.conditions.iter().find(|c| c.type_ == kind.as_str())
}
