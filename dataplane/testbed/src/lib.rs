//! Test support shared by the integration tests of `scistream-dataplane` and
//! `scistream-control` (a dev-dependency of both; never shipped).
//!
//! - [`netns`]: the five-namespace testbed (`scripts/testbed.sh`), commands
//!   and `scripts/traffic.py` runs inside it, waits with deadlines.
//! - [`gateway`]: an `s2ds` running in a testbed namespace.
//! - [`control`]: an `s2cs` running in a testbed namespace or on loopback,
//!   its certificates, token file and admin socket.
//! - [`capture`]: tcpdump captures on testbed links, pcap and frame parsing,
//!   frame injection.
//! - [`paths`]: the repository (configs, scripts), the Python interpreter and
//!   the workspace's binaries.
//! - [`scratch`]: names, loopback ports and directories private to one test.
//!
//! Everything here panics with a message naming what failed instead of
//! returning errors: a failure is a failed test.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod capture;
pub mod control;
pub mod gateway;
pub mod netns;
pub mod paths;
pub mod scratch;
