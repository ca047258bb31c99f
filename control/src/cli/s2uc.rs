//! The `s2uc` command line (SciStream's flags).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// SciStream user client: sets up, releases and inspects stream sessions on
/// s2cs gateways.
///
/// Exit status: 0 success; 2 the server refused (the gRPC status code is
/// printed) or the arguments are wrong; 1 the server cannot be reached or a
/// file cannot be read.
#[derive(Debug, Parser)]
#[command(name = "s2uc", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every subcommand (SciStream's underscore spellings are
/// accepted too).
#[derive(Debug, Args)]
pub struct Global {
    /// The s2cs to talk to, HOST:PORT ([v6]:PORT for IPv6).
    #[arg(
        long,
        global = true,
        default_value = "localhost:5000",
        value_name = "HOST:PORT"
    )]
    pub s2cs: String,
    /// PEM file of the certificate(s) to trust for the s2cs: its CA, or its
    /// own self-signed certificate. Required unless --insecure.
    #[arg(
        long = "server-cert",
        visible_alias = "server_cert",
        global = true,
        value_name = "FILE",
        conflicts_with = "insecure"
    )]
    pub server_cert: Option<PathBuf>,
    /// The name to verify the s2cs certificate for (default: the host of
    /// --s2cs, a DNS name or an IP address the certificate must hold).
    #[arg(
        long = "server-name",
        visible_alias = "server_name",
        global = true,
        value_name = "NAME"
    )]
    pub server_name: Option<String>,
    /// Plaintext HTTP/2, no TLS: the token and the session travel in clear.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Bearer token (visible to other local users in the process list:
    /// prefer --token-file or S2UC_TOKEN).
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// File holding the bearer token. Without --token and --token-file, the
    /// token is taken from the environment variable S2UC_TOKEN, if set.
    #[arg(
        long = "token-file",
        visible_alias = "token_file",
        global = true,
        value_name = "FILE"
    )]
    pub token_file: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds allowed for each RPC (req waits for its hello within it).
    #[arg(long, global = true, default_value = "200", value_name = "SECONDS",
          value_parser = parse_seconds)]
    pub timeout: Duration,
}

/// The stream's parameters on one gateway.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Listeners (parallel connections) to reserve on the gateway.
    #[arg(
        long = "num-conn",
        visible_alias = "num_conn",
        default_value_t = 1,
        value_parser = clap::value_parser!(i32).range(1..)
    )]
    pub num_conn: i32,
    /// Maximum data rate of the stream in kilobytes per second (1 kB =
    /// 1000 bytes), SciStream's unit: 20000 is 20 MB/s (160 Mbit/s).
    /// 0 = unlimited. The producer gateway polices it, within its own
    /// ceiling (`[api] max_rate_kbytes`); `s2uc status` shows what applies.
    #[arg(long, default_value_t = 0, value_name = "KB_PER_S",
          value_parser = clap::value_parser!(i32).range(0..))]
    pub rate: i32,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Producer side, on the producer gateway: reserve listeners that lead
    /// to the producer app's endpoints. Prints the new uid and the
    /// listeners (give both to outbound-request).
    #[command(name = "inbound-request")]
    InboundRequest {
        #[command(flatten)]
        stream: StreamArgs,
        /// The producer app's IP address.
        #[arg(long = "remote-ip", visible_alias = "remote_ip", value_name = "IP")]
        remote_ip: IpAddr,
        /// The producer app's ports, one endpoint each: P1,P2,...
        #[arg(
            long = "receiver-ports",
            visible_alias = "receiver_ports",
            value_name = "P1,P2,...",
            value_delimiter = ',',
            required = true
        )]
        receiver_ports: Vec<u16>,
    },
    /// Consumer side, on the consumer gateway: reserve listeners for the
    /// consumer app and connect them, through the producer gateway, to the
    /// stream UID. Prints the listeners the consumer app connects to.
    #[command(name = "outbound-request")]
    OutboundRequest {
        #[command(flatten)]
        stream: StreamArgs,
        /// Accepted for SciStream compatibility; not used.
        #[arg(long = "remote-ip", visible_alias = "remote_ip", hide = true)]
        _remote_ip: Option<String>,
        /// Accepted for SciStream compatibility; not used.
        #[arg(long = "receiver-ports", visible_alias = "receiver_ports", hide = true)]
        _receiver_ports: Option<String>,
        /// The session id that inbound-request printed.
        #[arg(value_name = "UID")]
        uid: String,
        /// The producer gateway's listeners that inbound-request printed:
        /// ip:port,ip:port,...
        #[arg(value_name = "PROD_LSTN")]
        prod_lstn: String,
    },
    /// Free a session on the gateway (its listeners and keys).
    Release {
        /// The session id.
        #[arg(value_name = "UID")]
        uid: String,
    },
    /// List the gateway's sessions.
    List,
    /// Show one session.
    Status {
        /// The session id.
        #[arg(value_name = "UID")]
        uid: String,
    },
}

/// `--timeout`: positive seconds, fractions allowed.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{s} is not in (0, 86400] seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}
