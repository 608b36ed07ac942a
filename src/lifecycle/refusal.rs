//! Why the lifecycle refuses an operation.

use crate::catalog::{SnapshotStatus, VolumeStatus};

/// A rule that forbids an operation, with the EVS error code the API reports it under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The volume's status does not allow the operation.
    #[error("Invalid volume: volume status must be {wanted} (it is {}).", .actual.as_str())]
    VolumeStatus {
        /// The statuses that would.
        wanted: &'static str,
        /// The volume's status.
        actual: VolumeStatus,
        /// EVS error code.
        code: &'static str,
    },
    /// The snapshot's status does not allow the operation.
    #[error("Invalid snapshot: snapshot status must be {wanted} (it is {}).", .actual.as_str())]
    SnapshotStatus {
        /// The statuses that would.
        wanted: &'static str,
        /// The snapshot's status.
        actual: SnapshotStatus,
        /// EVS error code.
        code: &'static str,
    },
    /// Another rule (sizes, attachments, dependents), said in `message`.
    #[error("{message}")]
    Rule {
        /// EVS error code.
        code: &'static str,
        /// What is wrong, for the user.
        message: String,
    },
    /// A quota would be exceeded (HTTP 413).
    #[error("{0}")]
    OverQuota(String),
}

impl Refusal {
    /// A rule refusal with the generic bad-request code.
    pub fn rule(message: impl Into<String>) -> Self {
        Self::coded("EVS.5400", message)
    }

    /// A rule refusal with a specific code.
    pub fn coded(code: &'static str, message: impl Into<String>) -> Self {
        Self::Rule {
            code,
            message: message.into(),
        }
    }

    /// The EVS error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::VolumeStatus { code, .. }
            | Self::SnapshotStatus { code, .. }
            | Self::Rule { code, .. } => code,
            Self::OverQuota(_) => "EVS.5413",
        }
    }
}

/// Refuses unless `actual` is one of `allowed`; `wanted` names them for the user.
pub(super) fn need_volume(
    actual: VolumeStatus,
    allowed: &[VolumeStatus],
    wanted: &'static str,
    code: &'static str,
) -> Result<(), Refusal> {
    if allowed.contains(&actual) {
        Ok(())
    } else {
        Err(Refusal::VolumeStatus {
            wanted,
            actual,
            code,
        })
    }
}
