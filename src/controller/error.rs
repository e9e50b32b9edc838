//! Errors of a reconciliation: only what a retry may fix. What a person must fix (a missing Secret, a
//! bad kubeconfig, an unknown cluster) is not an error but a condition with a reason.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write the status of {kind} {name}: {source}")]
    Status {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot read {what} for {kind} {name}: {source}")]
    Read {
        what: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot {action} {kind} {name} in cluster {cluster:?}: {source}")]
    Remote {
        action: &'static str,
        kind: &'static str,
        /// `namespace/name` (or `name` when cluster-scoped).
        name: String,
        cluster: String,
        // Boxed: this variant would make every `Result` of the controllers larger.
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{kind} {name} has no {what}")]
    Incomplete {
        kind: &'static str,
        name: String,
        what: &'static str,
    },
    #[error(
        "{kind} {name} is still used by: {users}; it is deleted once they finish or are deleted"
    )]
    InUse {
        kind: &'static str,
        name: String,
        users: String,
    },
    #[error("finalizer of {kind} {name}: {message}")]
    Finalizer {
        kind: &'static str,
        name: String,
        message: String,
    },
}

impl Error {
    /// A short, stable label for metrics and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Status { .. } => "StatusWriteFailed",
            Error::Read { .. } => "ReadFailed",
            Error::Remote { .. } => "RemoteCallFailed",
            Error::Incomplete { .. } => "IncompleteObject",
            Error::InUse { .. } => "InUse",
            Error::Finalizer { .. } => "FinalizerFailed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
