//! `s2uc`: the SciStream user client. Sets up a stream's sessions on the
//! producer and consumer gateways (`inbound-request`, `outbound-request`),
//! releases them and inspects them, over s2cs's gRPC API. The logic is in
//! `scistream_control::client`; this file is the command line.

#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ring::rand::SystemRandom;
use scistream_control::client::endpoints::{app_targets, parse_endpoint_list};
use scistream_control::client::error::EXIT_FAILURE;
use scistream_control::client::token::TOKEN_ENV;
use scistream_control::client::{
    output, uid, BearerToken, ClientError, ConnectOptions, S2ucClient, Security, ServerAddr,
};

/// SciStream user client: sets up, releases and inspects stream sessions on
/// s2cs gateways.
///
/// Exit status: 0 success; 2 the server refused (the gRPC status code is
/// printed) or the arguments are wrong; 1 the server cannot be reached or a
/// file cannot be read.
#[derive(Debug, Parser)]
#[command(name = "s2uc", version)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options of every subcommand (SciStream's underscore spellings are
/// accepted too).
#[derive(Debug, Args)]
struct Global {
    /// The s2cs to talk to, HOST:PORT ([v6]:PORT for IPv6).
    #[arg(
        long,
        global = true,
        default_value = "localhost:5000",
        value_name = "HOST:PORT"
    )]
    s2cs: String,
    /// PEM file of the certificate(s) to trust for the s2cs: its CA, or its
    /// own self-signed certificate. Required unless --insecure.
    #[arg(
        long = "server-cert",
        visible_alias = "server_cert",
        global = true,
        value_name = "FILE",
        conflicts_with = "insecure"
    )]
    server_cert: Option<PathBuf>,
    /// The name to verify the s2cs certificate for (default: the host of
    /// --s2cs, a DNS name or an IP address the certificate must hold).
    #[arg(
        long = "server-name",
        visible_alias = "server_name",
        global = true,
        value_name = "NAME"
    )]
    server_name: Option<String>,
    /// Plaintext HTTP/2, no TLS: the token and the session travel in clear.
    #[arg(long, global = true)]
    insecure: bool,
    /// Bearer token (visible to other local users in the process list:
    /// prefer --token-file or S2UC_TOKEN).
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// File holding the bearer token. Without --token and --token-file, the
    /// token is taken from the environment variable S2UC_TOKEN, if set.
    #[arg(
        long = "token-file",
        visible_alias = "token_file",
        global = true,
        value_name = "FILE"
    )]
    token_file: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds allowed for each RPC (req waits for its hello within it).
    #[arg(long, global = true, default_value = "200", value_name = "SECONDS",
          value_parser = parse_seconds)]
    timeout: Duration,
}

/// The stream's parameters on one gateway.
#[derive(Debug, Args)]
struct StreamArgs {
    /// Listeners (parallel connections) to reserve on the gateway.
    #[arg(
        long = "num-conn",
        visible_alias = "num_conn",
        default_value_t = 1,
        value_parser = clap::value_parser!(i32).range(1..)
    )]
    num_conn: i32,
    /// Maximum data rate of the stream in kilobytes per second (1 kB =
    /// 1000 bytes), SciStream's unit: 20000 is 20 MB/s (160 Mbit/s).
    /// 0 = unlimited. The producer gateway polices it, within its own
    /// ceiling (`[api] max_rate_kbytes`); `s2uc status` shows what applies.
    #[arg(long, default_value_t = 0, value_name = "KB_PER_S",
          value_parser = clap::value_parser!(i32).range(0..))]
    rate: i32,
}

#[derive(Debug, Subcommand)]
enum Command {
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
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{s} is not in (0, 86400] seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("s2uc: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE as u8);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("s2uc: {}", err.report());
            ExitCode::from(err.exit_code() as u8)
        }
    }
}

/// Runs the command; returns what to print on stdout.
async fn run(cli: Cli) -> Result<String, ClientError> {
    let g = &cli.global;
    // Check the arguments before any connection is made.
    let server: ServerAddr = g.s2cs.parse()?;
    let security = match (&g.server_cert, g.insecure) {
        (_, true) => Security::Insecure,
        (Some(cert), false) => Security::Tls {
            server_cert: cert.clone(),
            server_name: g.server_name.clone(),
        },
        (None, false) => return Err(ClientError::NoServerCert),
    };
    if let Security::Tls { server_name, .. } = &security {
        scistream_control::client::connect::verify_name(&server, server_name.as_deref())?;
    }
    let env_token = std::env::var(TOKEN_ENV).ok();
    let token = BearerToken::resolve(
        g.token.as_deref(),
        g.token_file.as_deref(),
        env_token.as_deref(),
    )?;
    let work = Work::from_command(&cli.command)?;
    if g.insecure {
        eprintln!(
            "s2uc: warning: --insecure: plaintext connection to {}; the token and \
             the session travel unencrypted and the server is not authenticated",
            server.authority()
        );
    }
    let opts = ConnectOptions {
        server,
        security,
        connect_timeout: g.timeout,
    };
    let client = S2ucClient::connect(&opts, token, g.timeout).await?;
    work.run(&client, g.json).await
}

/// A command with its arguments checked.
enum Work {
    Inbound {
        num_conn: i32,
        rate: i32,
        targets: Vec<String>,
    },
    Outbound {
        num_conn: i32,
        rate: i32,
        uid: String,
        prod_lstn: Vec<String>,
    },
    Release(String),
    List,
    Status(String),
}

impl Work {
    fn from_command(command: &Command) -> Result<Work, ClientError> {
        Ok(match command {
            Command::InboundRequest {
                stream,
                remote_ip,
                receiver_ports,
            } => Work::Inbound {
                num_conn: stream.num_conn,
                rate: stream.rate,
                targets: app_targets(*remote_ip, receiver_ports)?,
            },
            Command::OutboundRequest {
                stream,
                uid,
                prod_lstn,
                ..
            } => Work::Outbound {
                num_conn: stream.num_conn,
                rate: stream.rate,
                uid: uid.clone(),
                prod_lstn: parse_endpoint_list("PROD_LSTN", prod_lstn)?,
            },
            Command::Release { uid } => Work::Release(uid.clone()),
            Command::List => Work::List,
            Command::Status { uid } => Work::Status(uid.clone()),
        })
    }

    async fn run(self, client: &S2ucClient, json: bool) -> Result<String, ClientError> {
        let setup_out = |setup| {
            if json {
                output::setup_json(&setup)
            } else {
                output::setup_text(&setup)
            }
        };
        match self {
            Work::Inbound {
                num_conn,
                rate,
                targets,
            } => {
                let uid = uid::new_uid(&SystemRandom::new())?;
                let setup = client
                    .inbound_request(&uid, num_conn, rate, &targets)
                    .await?;
                Ok(setup_out(setup))
            }
            Work::Outbound {
                num_conn,
                rate,
                uid,
                prod_lstn,
            } => {
                let setup = client
                    .outbound_request(&uid, num_conn, rate, &prod_lstn)
                    .await?;
                Ok(setup_out(setup))
            }
            Work::Release(uid) => {
                client.release(&uid).await?;
                Ok(output::released(&uid, json))
            }
            Work::List => Ok(output::list(&client.list().await?, json)),
            Work::Status(uid) => Ok(output::status(&client.status(&uid).await?, json)),
        }
    }
}
