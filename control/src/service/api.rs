//! The northbound gRPC API: SciStream's `scistream.Control` (req, hello,
//! update, release), wire-compatible with SciStream's clients, and s2cs's
//! own `scistream.s2cs.Sessions` (list, status).
//!
//! Unlike SciStream, every session is independent (no shared "last
//! response"), ports are returned on release and on timeout, and each
//! failure has its own status code: INVALID_ARGUMENT with a reason,
//! NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, RESOURCE_EXHAUSTED,
//! DEADLINE_EXCEEDED, UNAVAILABLE, UNAUTHENTICATED, PERMISSION_DENIED.

// Handlers return `tonic::Status` (tonic's own error type, 176 bytes);
// the helpers here return it too rather than box and unbox it.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use super::request::{self, role_name, Bounds};
use super::{guard, lock, negotiate, Shared};
use crate::audit::{AuditRecord, Source};
use crate::auth::{self, Policy, Principal, Verifier};
use crate::config::ApiSection;
use crate::proto::control_server::{Control, ControlServer};
use crate::proto::s2cs::sessions_server::{Sessions, SessionsServer};
use crate::proto::s2cs::{ListRequest, SessionInfo, SessionList, StatusRequest};
use crate::proto::{AppResponse, Hello, Release, Request as Req, Response as Resp, UpdateTargets};
use crate::registry::{ListenerSpec, SessionRecord, SessionRole};
use crate::state::Session;

/// The API service state.
pub struct Api {
    sh: Arc<Shared>,
    cfg: ApiSection,
    verifier: Arc<dyn Verifier>,
    policy: Policy,
    /// Sessions whose `req` is waiting for `hello`, woken by hello or release.
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
    /// Sources that failed authentication too often (see [`guard`]).
    throttle: guard::FailureThrottle,
}

impl Api {
    /// The service for `sh` (which must have `[api]` and `[auth]`).
    pub fn new(sh: Arc<Shared>) -> anyhow::Result<Api> {
        let cfg = sh
            .cfg
            .api
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no [api] section"))?;
        let auth_cfg = sh
            .cfg
            .auth
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no [auth] section"))?;
        let verifier = auth::verifier(auth_cfg)?;
        let policy = Policy::new(auth_cfg);
        Ok(Api {
            sh,
            cfg,
            verifier,
            policy,
            waiting: Mutex::new(HashMap::new()),
            throttle: guard::FailureThrottle::default(),
        })
    }

    /// The caller of `r`, or the status refusing it. A source that failed
    /// too often lately is refused (RESOURCE_EXHAUSTED) before its token is
    /// checked; every token that fails its check counts against its source.
    fn authenticate<T>(&self, r: &Request<T>) -> Result<Principal, Status> {
        let src = guard::remote_ip(r);
        let now = std::time::Instant::now();
        if let Some(wait) = src.and_then(|ip| self.throttle.blocked(ip, now)) {
            let src = src.map(guard::source_of).expect("blocked needs a source");
            self.sh.metrics.auth_failure("throttled");
            debug!(%src, ?wait, "request refused: too many authentication failures from its source");
            return Err(Status::resource_exhausted(format!(
                "too many authentication failures from {src}; retry in {} s",
                wait.as_secs().max(1)
            )));
        }
        auth::authenticate(r.metadata(), &*self.verifier).map_err(|e| {
            warn!(reason = %e, source = ?src, "request refused");
            self.sh.metrics.auth_failure(e.reason_label());
            // Only a token that had to be checked (and failed) counts: a
            // missing or malformed one is refused without any work.
            if let (Some(ip), auth::AuthError::Invalid(_)) = (src, &e) {
                self.throttle.failed(ip, now);
            }
            e.into_status()
        })
    }

    /// What [`request`]'s checks depend on.
    fn bounds(&self) -> Bounds {
        let gw = &self.sh.cfg.gateway;
        Bounds {
            max_num_conn: self.cfg.max_num_conn,
            wan_address: gw.wan_address,
            lan_address: gw.lan_address,
        }
    }

    fn check_targets(&self, who: &Principal, targets: &[SocketAddr]) -> Result<(), Status> {
        for t in targets {
            self.policy.check_target(who, *t).map_err(|e| {
                warn!(subject = %who.subject, target = %t, reason = %e, "target refused");
                self.sh.metrics.auth_failure(e.reason_label());
                e.into_status()
            })?;
        }
        Ok(())
    }

    /// The session `uid` if `who` owns it: NOT_FOUND otherwise (another
    /// user's session is not revealed).
    fn owned<R>(
        &self,
        uid: &str,
        who: &Principal,
        f: impl FnOnce(&Session) -> R,
    ) -> Result<R, Status> {
        let st = self.sh.state();
        match st.get(uid) {
            Some(s) if s.tunnel.is_none() && s.record.owner == who.subject => Ok(f(s)),
            _ => Err(Status::not_found(format!("no session `{uid}`"))),
        }
    }

    /// The listeners of a session as "ip:port": ours on the WAN side for
    /// PROD (the peer gateway reaches them through the tunnel), on the LAN
    /// side for CONS (the consumer app connects to them).
    fn listener_strings(&self, s: &Session) -> Vec<String> {
        let ip = match s.record.role {
            SessionRole::Inbound => self.sh.cfg.gateway.wan_address,
            SessionRole::Outbound => self.sh.cfg.gateway.lan_address,
        };
        s.record
            .listeners
            .iter()
            .map(|l| SocketAddr::new(ip, l.port).to_string())
            .collect()
    }

    /// Frees a session: state, registry, tables, and a waiting `req`.
    fn release_session(&self, uid: &str) -> Result<(), Status> {
        self.sh
            .release_session(uid)
            .map_err(|e| Status::internal(format!("{e:#}")))?;
        if let Some(n) = lock(&self.waiting).remove(uid) {
            n.notify_one();
        }
        Ok(())
    }

    fn info(&self, s: &Session) -> SessionInfo {
        let targets = s
            .record
            .listeners
            .iter()
            .filter_map(|l| l.target.or(l.remote).map(|a| a.to_string()))
            .collect();
        let state = match (&s.hello, &s.outbound) {
            (None, _) => "reserved",
            (Some(_), None) => "ready",
            (Some(_), Some(_)) => "keyed",
        };
        let t = super::lock(&self.sh.traffic).session(&s.record.uid);
        let last_key_exchange_unix = s.switched_at.map_or(0, |at| {
            super::unix_now().saturating_sub(at.elapsed().as_secs())
        });
        SessionInfo {
            uid: s.record.uid.clone(),
            role: role_name(s.record.role).into(),
            state: state.into(),
            listeners: self.listener_strings(s),
            targets,
            num_conn: s.record.listeners.len() as i32,
            rate_bps: s.record.rate_bps as i64,
            peer: s.record.peer.clone(),
            epoch: s.record.epoch,
            rekeys: s.rekeys,
            owner: s.record.owner.clone(),
            last_key_exchange_unix,
            packets_out: t.out.packets,
            bytes_out: t.out.bytes,
            packets_in: t.inbound.packets,
            bytes_in: t.inbound.bytes,
            rate_out_bps: t.out_bps,
            rate_in_bps: t.in_bps,
            drops_auth_failed: t.auth_failed,
            drops_replayed: t.replayed,
            drops_rate_limited: t.rate_limited,
        }
    }
}

/// Releases a reservation whose `req` was cancelled by the client.
struct CancelGuard {
    api: Arc<Api>,
    uid: Option<String>,
}

impl CancelGuard {
    fn disarm(mut self) {
        self.uid = None;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        let Some(uid) = self.uid.take() else {
            return;
        };
        let api = self.api.clone();
        // Drop runs inside the runtime: release from a task of its own.
        tokio::spawn(async move {
            let hello = api.sh.state().get(&uid).map(|s| s.hello.is_some());
            if hello == Some(false) {
                lock(&api.waiting).remove(&uid);
                match api.release_session(&uid) {
                    Ok(()) => {
                        warn!(uid = %uid, "req cancelled by the client before hello; ports released")
                    }
                    Err(e) => warn!(uid = %uid, error = %e, "releasing a cancelled req failed"),
                }
            }
        });
    }
}

/// A shared handle, so one `Api` serves both gRPC services.
#[derive(Clone)]
pub struct ApiHandle(Arc<Api>);

impl ApiHandle {
    async fn req_call(
        &self,
        r: Request<Req>,
        call: &mut AuditRecord,
    ) -> Result<Response<Resp>, Status> {
        let api = &self.0;
        let who = api.authenticate(&r)?;
        call.identity = who.subject.clone();
        let mut r = r.into_inner();
        let uid = request::uid(&r.uid)?;
        call.uid = uid.clone();
        let args = request::req(&r, &api.bounds())?;
        let role = args.role;
        r.uid = uid;
        // SciStream's unit: kilobytes per second (its client sends 10000
        // when the user gives no --rate).
        let rate_bps = api.cfg.rate.session_bps(args.rate_kbytes);
        let notify = Arc::new(Notify::new());
        tokio::task::block_in_place(|| -> Result<(), Status> {
            let mut st = api.sh.state();
            if st.get(&r.uid).is_some() {
                return Err(Status::already_exists(format!(
                    "session `{}` exists",
                    r.uid
                )));
            }
            let ports = st
                .free_ports(&api.sh.cfg.ports.listener_range, r.num_conn as usize)
                .ok_or_else(|| {
                    Status::resource_exhausted(format!(
                        "fewer than {} listener ports are free",
                        r.num_conn
                    ))
                })?;
            let record = SessionRecord {
                uid: r.uid.clone(),
                role,
                peer: String::new(),
                epoch: 0,
                listeners: ports
                    .iter()
                    .map(|&port| ListenerSpec {
                        port,
                        remote: None,
                        target: None,
                    })
                    .collect(),
                created_unix: super::unix_now(),
                rate_bps,
                owner: who.subject.clone(),
            };
            api.sh
                .register_locked(&mut st, record)
                .map_err(|e| match e {
                    super::RegisterError::State(e) => Status::already_exists(e.to_string()),
                    super::RegisterError::Registry(e) => Status::internal(e.to_string()),
                })?;
            lock(&api.waiting).insert(r.uid.clone(), notify.clone());
            Ok(())
        })?;
        info!(uid = %r.uid, role = %r.role, num_conn = r.num_conn, rate_kbytes = r.rate, rate_policy = ?api.cfg.rate.client, rate_bps, subject = %who.subject, "req: ports reserved, waiting for hello");
        // If the client goes away while we wait (tonic then drops this
        // future), the reservation must not outlive it.
        let guard = CancelGuard {
            api: self.0.clone(),
            uid: Some(r.uid.clone()),
        };
        let waited = tokio::time::timeout(api.cfg.req_timeout, notify.notified()).await;
        guard.disarm();
        lock(&api.waiting).remove(&r.uid);
        let answer = {
            let st = api.sh.state();
            st.get(&r.uid)
                .map(|s| (s.hello.clone(), api.listener_strings(s)))
        };
        match (waited, answer) {
            (_, None) => Err(Status::aborted(format!("session `{}` was released", r.uid))),
            (Ok(()), Some((Some(hello), listeners))) => Ok(Response::new(Resp {
                listeners,
                prod_listeners: hello.iter().map(|a| a.to_string()).collect(),
            })),
            _ => {
                // No hello in time: give everything back.
                let _ = api.release_session(&r.uid);
                warn!(uid = %r.uid, timeout = ?api.cfg.req_timeout, "req: no hello in time; ports released");
                Err(Status::deadline_exceeded(format!(
                    "no hello for `{}` within {:?}; its ports were released",
                    r.uid, api.cfg.req_timeout
                )))
            }
        }
    }

    async fn hello_call(
        &self,
        r: Request<Hello>,
        call: &mut AuditRecord,
    ) -> Result<Response<AppResponse>, Status> {
        let api = &self.0;
        let who = api.authenticate(&r)?;
        call.identity = who.subject.clone();
        let mut r = r.into_inner();
        r.uid = request::uid(&r.uid)?;
        call.uid = r.uid.clone();
        // The session's role comes from its req. SciStream's client sends
        // its consumer-side hello with role PROD: the field is not checked.
        let role = api.owned(&r.uid, &who, |s| s.record.role)?;
        if r.role != role_name(role) {
            debug!(uid = %r.uid, hello_role = %r.role, session_role = role_name(role), "hello: role differs from the session's (ignored; the req's role holds)");
        }
        let apps = request::prod_listeners(&r, role, &api.bounds())?;
        api.check_targets(&who, &apps)?;
        let listeners = {
            let mut st = api.sh.state();
            st.set_hello(&r.uid, apps)
                .map_err(|e| Status::not_found(e.to_string()))?;
            api.listener_strings(st.get(&r.uid).expect("just set"))
        };
        if let Some(n) = lock(&api.waiting).get(&r.uid) {
            n.notify_one();
        }
        let message = match role {
            SessionRole::Inbound => "Sending Prod listeners...",
            SessionRole::Outbound => "Sending listeners...",
        };
        Ok(Response::new(AppResponse {
            message: message.into(),
            listeners,
        }))
    }

    async fn update_call(
        &self,
        r: Request<UpdateTargets>,
        call: &mut AuditRecord,
    ) -> Result<Response<Resp>, Status> {
        let api = &self.0;
        let who = api.authenticate(&r)?;
        call.identity = who.subject.clone();
        let mut r = r.into_inner();
        r.uid = request::uid(&r.uid)?;
        call.uid = r.uid.clone();
        let (role, hello, ports) = api.owned(&r.uid, &who, |s| {
            (
                s.record.role,
                s.hello.is_some(),
                s.record
                    .listeners
                    .iter()
                    .map(|l| l.port)
                    .collect::<Vec<u16>>(),
            )
        })?;
        request::update_role(&r, role)?;
        if !hello {
            return Err(Status::failed_precondition(format!(
                "session `{}` has had no hello yet",
                r.uid
            )));
        }
        let remotes = request::remote_listeners(&r, role, &api.bounds())?;
        api.check_targets(&who, &remotes)?;
        // Round-robin the given endpoints onto the reserved listeners.
        let mapped: Vec<SocketAddr> = (0..ports.len())
            .map(|i| remotes[i % remotes.len()])
            .collect();
        let peer = match role {
            SessionRole::Outbound => {
                // One gateway: request::remote_listeners checked it.
                let ip = remotes[0].ip();
                let p = api.sh.cfg.peer_by_wan_address(ip).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "no configured peer gateway has WAN address {ip}"
                    ))
                })?;
                Some(p.name.clone())
            }
            SessionRole::Inbound => None,
        };
        let listeners: Vec<ListenerSpec> = ports
            .iter()
            .zip(&mapped)
            .map(|(&port, &to)| ListenerSpec {
                port,
                target: (role == SessionRole::Inbound).then_some(to),
                remote: (role == SessionRole::Outbound).then_some(to),
            })
            .collect();
        tokio::task::block_in_place(|| -> anyhow::Result<()> {
            let mut st = api.sh.state();
            st.set_listeners(&r.uid, listeners.clone())?;
            let mut reg = api.sh.registry();
            reg.set_listeners(&r.uid, &listeners)?;
            if let Some(p) = &peer {
                st.bind_peer(&r.uid, p)?;
                reg.set_peer(&r.uid, p)?;
            }
            drop(reg);
            api.sh.publish_locked(&st)?;
            Ok(())
        })
        .map_err(|e| Status::internal(format!("{e:#}")))?;
        info!(uid = %r.uid, role = role_name(role), targets = ?mapped, peer = ?peer, "update: listeners mapped");
        if role == SessionRole::Outbound {
            // Negotiate the keys now, so that the caller learns of a failure.
            negotiate::rekey(api.sh.clone(), r.uid.clone(), "update").await;
            // A timer-started exchange may have been in flight: wait for it.
            let deadline = tokio::time::Instant::now() + negotiate::EXCHANGE_TIMEOUT;
            while lock(&api.sh.in_flight).contains(&r.uid) && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let st = api.sh.state();
            let s = st
                .get(&r.uid)
                .ok_or_else(|| Status::aborted("released meanwhile"))?;
            if s.outbound.is_none() {
                let why = s.last_error.clone().unwrap_or_else(|| "no keys".into());
                return Err(Status::unavailable(format!(
                    "key negotiation with the peer gateway failed: {why}"
                )));
            }
        }
        let listeners = api.owned(&r.uid, &who, |s| api.listener_strings(s))?;
        Ok(Response::new(Resp {
            listeners,
            prod_listeners: mapped.iter().map(|a| a.to_string()).collect(),
        }))
    }

    async fn release_call(
        &self,
        r: Request<Release>,
        call: &mut AuditRecord,
    ) -> Result<Response<Resp>, Status> {
        let api = &self.0;
        let who = api.authenticate(&r)?;
        call.identity = who.subject.clone();
        let mut r = r.into_inner();
        r.uid = request::uid(&r.uid)?;
        call.uid = r.uid.clone();
        let (role, peer) = api.owned(&r.uid, &who, |s| {
            (role_name(s.record.role), s.record.peer.clone())
        })?;
        call.role = role.to_string();
        call.peer = peer;
        api.release_session(&r.uid)?;
        info!(uid = %r.uid, subject = %who.subject, "release: session freed");
        Ok(Response::new(Resp::default()))
    }
}

impl ApiHandle {
    async fn list_call(
        &self,
        r: Request<ListRequest>,
        call: &mut AuditRecord,
    ) -> Result<Response<SessionList>, Status> {
        let api = &self.0;
        let who = api.authenticate(&r)?;
        call.identity = who.subject.clone();
        api.sh.sample_traffic();
        let st = api.sh.state();
        // A configured tunnel is the operator's, not an API user's: never
        // listed (its uid is no UUID, so `status` cannot name it either).
        let sessions = st
            .sessions()
            .filter(|s| s.tunnel.is_none() && s.record.owner == who.subject)
            .map(|s| api.info(s))
            .collect();
        Ok(Response::new(SessionList { sessions }))
    }

    async fn status_call(
        &self,
        r: Request<StatusRequest>,
        call: &mut AuditRecord,
    ) -> Result<Response<SessionInfo>, Status> {
        let api = &self.0;
        let who = api.authenticate(&r)?;
        call.identity = who.subject.clone();
        let uid = request::uid(&r.into_inner().uid)?;
        call.uid = uid.clone();
        api.sh.sample_traffic();
        let info = api.owned(&uid, &who, |s| api.info(s))?;
        Ok(Response::new(info))
    }
}

/// Each call is counted (method, status code) and audited.
macro_rules! audited {
    ($self:ident, $method:literal, $r:ident, $call_fn:ident, $fill:expr) => {{
        let mut call = AuditRecord::new(Source::Api, "-", $method);
        let fill: &dyn Fn(&mut AuditRecord) = &$fill;
        fill(&mut call);
        let out = $self.$call_fn($r, &mut call).await;
        $self.0.finish(call, &out);
        out
    }};
}

#[tonic::async_trait]
impl Control for ApiHandle {
    async fn req(&self, r: Request<Req>) -> Result<Response<Resp>, Status> {
        let (uid, role) = (r.get_ref().uid.clone(), r.get_ref().role.clone());
        audited!(self, "req", r, req_call, |c: &mut AuditRecord| {
            c.uid = uid.clone();
            c.role = role.clone();
        })
    }

    async fn hello(&self, r: Request<Hello>) -> Result<Response<AppResponse>, Status> {
        let (uid, role) = (r.get_ref().uid.clone(), r.get_ref().role.clone());
        let targets = r.get_ref().prod_listeners.clone();
        audited!(self, "hello", r, hello_call, |c: &mut AuditRecord| {
            c.uid = uid.clone();
            c.role = role.clone();
            c.targets = targets.clone();
        })
    }

    async fn update(&self, r: Request<UpdateTargets>) -> Result<Response<Resp>, Status> {
        let (uid, role) = (r.get_ref().uid.clone(), r.get_ref().role.clone());
        let targets = r.get_ref().remote_listeners.clone();
        audited!(self, "update", r, update_call, |c: &mut AuditRecord| {
            c.uid = uid.clone();
            c.role = role.clone();
            c.targets = targets.clone();
        })
    }

    async fn release(&self, r: Request<Release>) -> Result<Response<Resp>, Status> {
        let uid = r.get_ref().uid.clone();
        audited!(self, "release", r, release_call, |c: &mut AuditRecord| {
            c.uid = uid.clone();
        })
    }
}

#[tonic::async_trait]
impl Sessions for ApiHandle {
    async fn list(&self, r: Request<ListRequest>) -> Result<Response<SessionList>, Status> {
        audited!(self, "list", r, list_call, |_: &mut AuditRecord| {})
    }

    async fn status(&self, r: Request<StatusRequest>) -> Result<Response<SessionInfo>, Status> {
        let uid = r.get_ref().uid.clone();
        audited!(self, "status", r, status_call, |c: &mut AuditRecord| {
            c.uid = uid.clone();
        })
    }
}

impl Api {
    /// Counts a finished call and writes its audit record.
    fn finish<T>(&self, mut call: AuditRecord, out: &Result<Response<T>, Status>) {
        let code = match out {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        self.sh.metrics.api(&call.method, code);
        call.code = crate::metrics::code_name(code).to_string();
        if let Err(s) = out {
            call.reason = s.message().to_string();
        }
        if call.role.is_empty() {
            if let Some(s) = self.sh.state().get(&call.uid) {
                call.role = role_name(s.record.role).to_string();
                call.peer = s.record.peer.clone();
            }
        } else if let Some(s) = self.sh.state().get(&call.uid) {
            call.peer = s.record.peer.clone();
        }
        self.sh.audit.record(call);
    }
}

/// Largest request message the API decodes: far above any valid request
/// (the largest, an `update` with `max_num_conn` endpoints, is a few KB),
/// far below what would let one request allocate much.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Concurrent calls on one connection (HTTP/2 streams).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// tonic refuses a message over its decoding limit with OUT_OF_RANGE;
/// gRPC's own implementations (and SciStream's clients) expect
/// RESOURCE_EXHAUSTED for that, so the API answers with it.
fn too_large_is_resource_exhausted<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let too_large = resp.headers().get("grpc-status").is_some_and(|v| v == "11")
        && resp
            .headers()
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                m.contains("message%20length%20too%20large")
                    || m.contains("message length too large")
            });
    if too_large {
        resp.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    resp
}

impl Api {
    /// Binds the API's TCP listener (so a port clash fails `s2cs run`).
    pub async fn bind(&self) -> anyhow::Result<tokio::net::TcpListener> {
        let listen = self
            .cfg
            .listen
            .ok_or_else(|| anyhow::anyhow!("[api] has no listen address"))?;
        tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding the gRPC API on {listen}: {e}"))
    }

    /// Serves the API on `listener` until the task is aborted: TLS with the
    /// configured certificate unless `insecure`.
    /// Connections are admitted and their TLS handshakes bounded by
    /// [`guard::guarded_incoming`] with the `[api]` limits; each request
    /// message is at most [`MAX_REQUEST_BYTES`].
    pub async fn serve(self, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
        let listen = listener.local_addr()?;
        let limits = self.cfg.limits;
        let metrics = self.sh.metrics.clone();
        let insecure = self.cfg.insecure;
        let tls = match insecure {
            true => {
                warn!(%listen, "the gRPC API runs WITHOUT TLS ([api] insecure = true): tokens and session data cross the network in clear");
                None
            }
            false => Some(crate::peer::tls::api_acceptor(
                &self.cfg.cert,
                &self.cfg.key,
            )?),
        };
        let handle = ApiHandle(Arc::new(self));
        info!(%listen, tls = !insecure, max_connections = limits.max_connections, per_source = limits.per_source, "gRPC API (scistream.Control) listening");
        let router = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
            .layer(tower::util::MapResponseLayer::new(
                too_large_is_resource_exhausted,
            ))
            .add_service(
                ControlServer::new(handle.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
            )
            .add_service(SessionsServer::new(handle).max_decoding_message_size(MAX_REQUEST_BYTES));
        let served = match tls {
            None => {
                let incoming = guard::guarded_incoming(listener, limits, guard::plain, metrics);
                router.serve_with_incoming(incoming).await
            }
            Some(acceptor) => {
                let incoming =
                    guard::guarded_incoming(listener, limits, guard::tls(acceptor), metrics);
                router.serve_with_incoming(incoming).await
            }
        };
        served.map_err(|e| anyhow::anyhow!("gRPC API on {listen}: {e}"))
    }
}
