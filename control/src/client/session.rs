//! The SciStream call sequences against one s2cs: `req` + `hello` +
//! `update` for a session's set-up, `release`, and the session queries.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use tonic::transport::Channel;
use tonic::Code;

use super::connect::{connect, ConnectOptions};
use super::error::ClientError;
use super::token::BearerToken;
use crate::proto::control_client::ControlClient;
use crate::proto::s2cs::sessions_client::SessionsClient;
use crate::proto::s2cs::{ListRequest, SessionInfo, StatusRequest};
use crate::proto::{Hello, Release, Request, Response, UpdateTargets};

/// The role of the producer (inbound) side of a session.
pub const ROLE_PROD: &str = "PROD";
/// The role of the consumer (outbound) side of a session.
pub const ROLE_CONS: &str = "CONS";

/// How much later than the local per-RPC timeout the server's deadline is.
pub const SERVER_DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// How `hello` is retried while the server has not seen the `req` yet (it
/// answers `NOT_FOUND` for a uid it does not know).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloRetry {
    /// Wait before the first `hello`, so that `req` is usually first.
    pub first_delay: Duration,
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Wait after the first `NOT_FOUND`; doubled after each further one.
    pub backoff: Duration,
}

impl Default for HelloRetry {
    /// 20 ms head start, then 6 retries 50 ms to 1.6 s apart (about 3 s in
    /// all).
    fn default() -> HelloRetry {
        HelloRetry {
            first_delay: Duration::from_millis(20),
            attempts: 7,
            backoff: Duration::from_millis(50),
        }
    }
}

/// The outcome of a session's set-up on one gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionSetup {
    /// The session id.
    pub uid: String,
    /// The gateway's listeners, `ip:port` (from `req`).
    pub listeners: Vec<String>,
    /// The producer app targets, `ip:port` (from `req`; empty for `CONS`
    /// unless the server fills it).
    pub prod_listeners: Vec<String>,
}

/// A client of one s2cs: `scistream.Control` and `scistream.s2cs.Sessions`
/// over one HTTP/2 channel, with an optional bearer token and a per-RPC
/// timeout.
#[derive(Debug, Clone)]
pub struct S2ucClient {
    control: ControlClient<Channel>,
    sessions: SessionsClient<Channel>,
    token: Option<BearerToken>,
    timeout: Duration,
    hello_retry: HelloRetry,
}

impl S2ucClient {
    /// A client over an open `channel`; each RPC is given `timeout`
    /// (enforced locally, and sent as `grpc-timeout`).
    pub fn new(channel: Channel, token: Option<BearerToken>, timeout: Duration) -> S2ucClient {
        S2ucClient {
            control: ControlClient::new(channel.clone()),
            sessions: SessionsClient::new(channel),
            token,
            timeout,
            hello_retry: HelloRetry::default(),
        }
    }

    /// Connects (see [`connect`]) and makes a client.
    pub async fn connect(
        opts: &ConnectOptions,
        token: Option<BearerToken>,
        timeout: Duration,
    ) -> Result<S2ucClient, ClientError> {
        let channel = connect(opts).await?;
        Ok(S2ucClient::new(channel, token, timeout))
    }

    /// Replaces the `hello` retry policy.
    pub fn with_hello_retry(mut self, retry: HelloRetry) -> S2ucClient {
        self.hello_retry = retry;
        self
    }

    /// The producer side on the producer gateway: `req(uid, PROD)` and,
    /// while it waits, `hello(uid, targets, PROD)`; then
    /// `update(uid, PROD, prod_listeners)` with the producer app targets the
    /// server echoed (or `targets` if it echoed none). Returns the
    /// gateway's listeners.
    pub async fn inbound_request(
        &self,
        uid: &str,
        num_conn: i32,
        rate: i32,
        targets: &[String],
    ) -> Result<SessionSetup, ClientError> {
        let response = self
            .req_and_hello(uid, ROLE_PROD, num_conn, rate, targets.to_vec())
            .await?;
        let update_targets = if response.prod_listeners.is_empty() {
            targets.to_vec()
        } else {
            response.prod_listeners.clone()
        };
        self.update(uid, ROLE_PROD, update_targets).await?;
        Ok(SessionSetup {
            uid: uid.to_string(),
            listeners: response.listeners,
            prod_listeners: response.prod_listeners,
        })
    }

    /// The consumer side on the consumer gateway: `req(uid, CONS)` and,
    /// while it waits, `hello(uid, [], CONS)`; then
    /// `update(uid, CONS, prod_gateway_listeners)`, which makes the two
    /// gateways negotiate keys. Returns the consumer gateway's listeners
    /// (where the consumer app connects).
    pub async fn outbound_request(
        &self,
        uid: &str,
        num_conn: i32,
        rate: i32,
        prod_gateway_listeners: &[String],
    ) -> Result<SessionSetup, ClientError> {
        let response = self
            .req_and_hello(uid, ROLE_CONS, num_conn, rate, Vec::new())
            .await?;
        self.update(uid, ROLE_CONS, prod_gateway_listeners.to_vec())
            .await?;
        Ok(SessionSetup {
            uid: uid.to_string(),
            listeners: response.listeners,
            prod_listeners: response.prod_listeners,
        })
    }

    /// `release(uid)`: frees the session on this gateway.
    pub async fn release(&self, uid: &str) -> Result<(), ClientError> {
        let msg = Release {
            uid: uid.to_string(),
        };
        let mut control = self.control.clone();
        self.call("release", control.release(self.request(msg)))
            .await
            .map(drop)
    }

    /// `Sessions.list`: the gateway's sessions visible to this identity.
    pub async fn list(&self) -> Result<Vec<SessionInfo>, ClientError> {
        let mut sessions = self.sessions.clone();
        let list = self
            .call("list", sessions.list(self.request(ListRequest {})))
            .await?;
        Ok(list.sessions)
    }

    /// `Sessions.status(uid)`: one session.
    pub async fn status(&self, uid: &str) -> Result<SessionInfo, ClientError> {
        let msg = StatusRequest {
            uid: uid.to_string(),
        };
        let mut sessions = self.sessions.clone();
        self.call("status", sessions.status(self.request(msg)))
            .await
    }

    /// `req` with `hello` sent concurrently (after a head start, retried on
    /// `NOT_FOUND`). A failing `req` wins over the `hello` it made fail; a
    /// failing `hello` cancels the waiting `req`.
    async fn req_and_hello(
        &self,
        uid: &str,
        role: &str,
        num_conn: i32,
        rate: i32,
        app_listeners: Vec<String>,
    ) -> Result<Response, ClientError> {
        let req_msg = Request {
            uid: uid.to_string(),
            role: role.to_string(),
            num_conn,
            rate,
        };
        let hello_msg = Hello {
            uid: uid.to_string(),
            prod_listeners: app_listeners,
            role: role.to_string(),
        };
        let mut control = self.control.clone();
        let req = self.call("req", control.req(self.request(req_msg)));
        let hello = self.hello_with_retry(hello_msg);
        tokio::pin!(req, hello);
        tokio::select! {
            biased;
            response = &mut req => {
                let response = response?;
                hello.await?;
                Ok(response)
            }
            done = &mut hello => {
                done?;
                req.await
            }
        }
    }

    /// `hello`, retried per [`HelloRetry`] while the answer is `NOT_FOUND`.
    async fn hello_with_retry(&self, msg: Hello) -> Result<(), ClientError> {
        let policy = self.hello_retry;
        tokio::time::sleep(policy.first_delay).await;
        let mut backoff = policy.backoff;
        let mut attempt = 1;
        loop {
            let mut control = self.control.clone();
            match self
                .call("hello", control.hello(self.request(msg.clone())))
                .await
            {
                Ok(_) => return Ok(()),
                Err(ClientError::Rpc { status, .. })
                    if status.code() == Code::NotFound && attempt < policy.attempts =>
                {
                    tracing::debug!(uid = %msg.uid, attempt, "hello: NOT_FOUND, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// `update(uid, remote_listeners, role)`.
    async fn update(
        &self,
        uid: &str,
        role: &str,
        remote_listeners: Vec<String>,
    ) -> Result<Response, ClientError> {
        let msg = UpdateTargets {
            uid: uid.to_string(),
            remote_listeners,
            role: role.to_string(),
        };
        let mut control = self.control.clone();
        self.call("update", control.update(self.request(msg))).await
    }

    /// A request carrying `msg`, the token and the deadline. The deadline
    /// sent (`grpc-timeout`) is [`SERVER_DEADLINE_MARGIN`] later than the
    /// one enforced here, so that the local `DEADLINE_EXCEEDED` is reported
    /// rather than the server's cancellation.
    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(msg);
        request.set_timeout(self.timeout.saturating_add(SERVER_DEADLINE_MARGIN));
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.header().clone());
        }
        request
    }

    /// Awaits an RPC within the per-RPC timeout and unwraps its answer.
    async fn call<T>(
        &self,
        rpc: &'static str,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, ClientError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(ClientError::Rpc {
                rpc,
                status: Box::new(status),
            }),
            Err(_) => Err(ClientError::Timeout {
                rpc,
                after: self.timeout,
            }),
        }
    }
}
