//! `s2uc`: the SciStream user client. Sets up a stream's sessions on the
//! producer and consumer gateways (`inbound-request`, `outbound-request`),
//! releases them and inspects them, over s2cs's gRPC API. The logic is in
//! `scistream_control::client`; this file is the command line.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use ring::rand::SystemRandom;
use scistream_control::cli::s2uc::{Cli, Command};
use scistream_control::client::endpoints::{app_targets, parse_endpoint_list};
use scistream_control::client::error::EXIT_FAILURE;
use scistream_control::client::token::TOKEN_ENV;
use scistream_control::client::{
    output, uid, BearerToken, ClientError, ConnectOptions, S2ucClient, Security, ServerAddr,
};

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
