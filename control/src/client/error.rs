//! What can go wrong in a client call, and how `s2uc` reports it.

use std::error::Error as _;
use std::path::PathBuf;
use std::time::Duration;

use tonic::Code;

/// Exit status of `s2uc` when the server refused the request (a gRPC
/// status from the server, or the per-RPC deadline) or the command line is
/// wrong (clap's convention for usage errors).
pub const EXIT_REFUSED: i32 = 2;

/// Exit status of `s2uc` for everything else: the server cannot be reached,
/// the connection broke, a local file cannot be read.
pub const EXIT_FAILURE: i32 = 1;

/// An error of the client library; each names the thing that failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--s2cs` is not `HOST:PORT`.
    #[error("--s2cs {addr:?}: {reason}")]
    BadAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `--server-name` is neither a DNS name nor an IP address.
    #[error("--server-name {name:?}: not a valid DNS name or IP address")]
    BadServerName {
        /// The name as given.
        name: String,
    },
    /// TLS was asked for (no `--insecure`) but no certificate to trust.
    #[error(
        "TLS needs --server_cert FILE (the PEM certificate or CA to trust); \
         --insecure for plaintext"
    )]
    NoServerCert,
    /// The trusted certificate file cannot be used.
    #[error("--server_cert {}: {reason}", path.display())]
    BadServerCert {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (unreadable, not PEM, no certificate).
        reason: String,
    },
    /// The token file cannot be read.
    #[error("--token-file {}", path.display())]
    ReadToken {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bearer token cannot be sent as gRPC metadata.
    #[error("token from {origin}: {reason}")]
    BadToken {
        /// Where it came from (`--token`, `--token-file FILE`, `S2UC_TOKEN`).
        origin: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A listener or target is not `ip:port`.
    #[error("{what} {value:?}: {reason}")]
    BadEndpoint {
        /// Which argument (`PROD_LSTN`, `--remote_ip`, ...).
        what: &'static str,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The connection to s2cs could not be set up (TCP or TLS).
    #[error("connecting to {addr}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// An RPC ended with a gRPC status other than OK.
    #[error("{rpc}: {}: {}", code_name(status.code()), status.message())]
    Rpc {
        /// The RPC (`req`, `hello`, `update`, `release`, `list`, `status`).
        rpc: &'static str,
        /// The status, from the server or from the transport (boxed: a
        /// status is large).
        status: Box<tonic::Status>,
    },
    /// An RPC did not complete within the per-RPC timeout.
    #[error("{rpc}: DEADLINE_EXCEEDED: no answer within {}s", after.as_secs_f64())]
    Timeout {
        /// The RPC.
        rpc: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// The operating system's random source failed.
    #[error("the system random number generator failed")]
    Random,
}

impl ClientError {
    /// The gRPC status code name (`INVALID_ARGUMENT`, ...) when the error is
    /// a status or a deadline, else `None`.
    pub fn code_name(&self) -> Option<&'static str> {
        match self {
            ClientError::Rpc { status, .. } => Some(code_name(status.code())),
            ClientError::Timeout { .. } => Some(code_name(Code::DeadlineExceeded)),
            _ => None,
        }
    }

    /// Whether the error is a transport failure rather than an answer: a
    /// status that tonic made from an I/O or HTTP/2 error carries that error
    /// as its source; a status sent by the server does not.
    pub fn is_transport(&self) -> bool {
        match self {
            ClientError::Connect { .. } => true,
            ClientError::Rpc { status, .. } => status.source().is_some(),
            _ => false,
        }
    }

    /// The process exit status for this error: [`EXIT_REFUSED`] when the
    /// server refused (or the arguments are wrong), [`EXIT_FAILURE`] for
    /// transport and local I/O failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Rpc { .. } if self.is_transport() => EXIT_FAILURE,
            ClientError::Rpc { .. }
            | ClientError::Timeout { .. }
            | ClientError::BadAddress { .. }
            | ClientError::BadServerName { .. }
            | ClientError::NoServerCert
            | ClientError::BadToken { .. }
            | ClientError::BadEndpoint { .. } => EXIT_REFUSED,
            ClientError::BadServerCert { .. }
            | ClientError::ReadToken { .. }
            | ClientError::Connect { .. }
            | ClientError::Random => EXIT_FAILURE,
        }
    }

    /// The message with its chain of causes, `a: b: c`, for one stderr line.
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut cause = match self {
            ClientError::Rpc { status, .. } => status.source(),
            other => other.source(),
        };
        while let Some(err) = cause {
            let part = err.to_string();
            if !text.ends_with(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            cause = err.source();
        }
        text
    }
}

/// The canonical name of a gRPC status code, as in the gRPC specification
/// (`OK`, `INVALID_ARGUMENT`, ...).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_status_is_a_refusal_with_its_code_name() {
        let err = ClientError::Rpc {
            rpc: "req",
            status: Box::new(tonic::Status::already_exists("uid x is taken")),
        };
        assert_eq!(err.code_name(), Some("ALREADY_EXISTS"));
        assert!(!err.is_transport());
        assert_eq!(err.exit_code(), EXIT_REFUSED);
        assert_eq!(err.report(), "req: ALREADY_EXISTS: uid x is taken");
    }

    #[test]
    fn status_from_an_io_error_is_a_transport_failure() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let status = Box::new(tonic::Status::from_error(Box::new(io)));
        let err = ClientError::Rpc {
            rpc: "update",
            status,
        };
        assert!(err.is_transport());
        assert_eq!(err.exit_code(), EXIT_FAILURE);
        assert!(err.report().contains("reset by peer"), "{}", err.report());
    }

    #[test]
    fn timeout_is_deadline_exceeded() {
        let err = ClientError::Timeout {
            rpc: "req",
            after: Duration::from_millis(1500),
        };
        assert_eq!(err.code_name(), Some("DEADLINE_EXCEEDED"));
        assert_eq!(err.exit_code(), EXIT_REFUSED);
        assert_eq!(
            err.to_string(),
            "req: DEADLINE_EXCEEDED: no answer within 1.5s"
        );
    }

    #[test]
    fn every_code_has_a_distinct_name() {
        let names: std::collections::HashSet<_> =
            (0..=16).map(|i| code_name(Code::from(i))).collect();
        assert_eq!(names.len(), 17);
    }
}
