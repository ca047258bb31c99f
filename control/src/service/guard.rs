//! What stands between the gRPC API's socket and its handlers when the
//! network is hostile: a bound on connections (in all and per source), a
//! deadline for the TLS handshake, and a throttle on repeated
//! authentication failures from one source.
//!
//! - **Connections.** The accept loop ([`guarded_incoming`]) admits a TCP
//!   connection only while fewer than [`Limits::max_connections`] are open
//!   in all and fewer than [`Limits::per_source`] from its source; a
//!   connection over either bound is closed at once and counted. The
//!   admission is held by the connection ([`Guarded`]) and given back when
//!   it closes.
//! - **Slow handshakes.** Each admitted connection completes its TLS
//!   handshake within [`Limits::handshake_timeout`] or is closed and
//!   counted; handshakes run in tasks of their own, so a slow client never
//!   delays the accept loop or anyone else's handshake.
//! - **Authentication failures** ([`FailureThrottle`]): each source has a
//!   bucket of [`FAILURE_BURST`] failures that refills at one per
//!   [`FAILURE_REFILL`]; a source whose bucket is empty is refused with
//!   RESOURCE_EXHAUSTED before its token is even checked (a token check
//!   costs a PBKDF2 derivation: failures must not buy CPU).
//!
//! A source is an IPv4 address or an IPv6 /64 (what one host can use).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;
use tracing::{debug, warn};

use crate::metrics::ControlMetrics;

/// Default bound on open API connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default bound on open API connections from one source.
pub const DEFAULT_PER_SOURCE: usize = 256;
/// Default deadline of the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Failures a source may have before it is throttled.
pub const FAILURE_BURST: u32 = 10;
/// One failure is forgiven every this long.
pub const FAILURE_REFILL: Duration = Duration::from_secs(6);
/// Most sources the throttle remembers; past it, sources whose bucket is
/// full again are forgotten first.
pub const MAX_TRACKED_SOURCES: usize = 65_536;

/// The connection bounds of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections from one source.
    pub per_source: usize,
    /// Deadline of the TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            per_source: DEFAULT_PER_SOURCE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// The source a connection or request is accounted to: an IPv4 address,
/// or the /64 of an IPv6 address (IPv4-mapped IPv6 counts as IPv4).
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// Open connections per source, shared by the accept loop and the
/// connections' guards.
#[derive(Debug, Default)]
struct PerSource(Mutex<HashMap<IpAddr, usize>>);

impl PerSource {
    /// Admits one more connection from `src` if it has fewer than `max`.
    fn try_admit(&self, src: IpAddr, max: usize) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(src).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, src: IpAddr) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&src) {
            *n -= 1;
            if *n == 0 {
                m.remove(&src);
            }
        }
    }
}

/// A connection's admission: gives its slots back when dropped.
struct Admission {
    _global: OwnedSemaphorePermit,
    per_source: Arc<PerSource>,
    src: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.per_source.release(self.src);
    }
}

/// An admitted connection: the I/O (TCP, or TLS over TCP) and its
/// admission, released when the server drops the connection.
pub struct Guarded<IO> {
    io: IO,
    _admission: Admission,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: Connected> Connected for Guarded<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// The connections of `listener` that are admitted under `limits` and, with
/// TLS, have completed their handshake in time, as a stream for
/// `serve_with_incoming`. Refusals are counted in `metrics`
/// (`s2cs_api_connections_refused_total`). The accept loop runs until the
/// stream is dropped.
pub fn guarded_incoming<IO>(
    listener: TcpListener,
    limits: Limits,
    handshake: impl Fn(TcpStream) -> HandshakeFuture<IO> + Send + Sync + 'static,
    metrics: ControlMetrics,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Guarded<IO>>>
where
    IO: Send + 'static,
{
    // A small queue: the server takes connections as fast as they come.
    let (tx, rx) = mpsc::channel(64);
    let global = Arc::new(Semaphore::new(limits.max_connections));
    let per_source = Arc::new(PerSource::default());
    let handshake = Arc::new(handshake);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %e, "gRPC API: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let src = source_of(peer.ip());
            let Ok(global_permit) = global.clone().try_acquire_owned() else {
                metrics.connection_refused("limit");
                debug!(%peer, max = limits.max_connections, "gRPC API: connection refused (too many open)");
                continue;
            };
            if !per_source.try_admit(src, limits.per_source) {
                metrics.connection_refused("per_source");
                debug!(%peer, max = limits.per_source, "gRPC API: connection refused (too many from its source)");
                continue;
            }
            let admission = Admission {
                _global: global_permit,
                per_source: per_source.clone(),
                src,
            };
            let tx = tx.clone();
            let handshake = handshake.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(limits.handshake_timeout, handshake(stream)).await {
                    Ok(Ok(io)) => {
                        let _ = tx
                            .send(Ok(Guarded {
                                io,
                                _admission: admission,
                            }))
                            .await;
                    }
                    Ok(Err(e)) => {
                        metrics.connection_refused("handshake_failed");
                        debug!(%peer, error = %e, "gRPC API: TLS handshake failed");
                    }
                    Err(_) => {
                        metrics.connection_refused("handshake_timeout");
                        debug!(%peer, timeout = ?limits.handshake_timeout, "gRPC API: TLS handshake timed out");
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// What a [`guarded_incoming`] handshake returns.
pub type HandshakeFuture<IO> =
    Pin<Box<dyn std::future::Future<Output = io::Result<IO>> + Send + 'static>>;

/// A plaintext handshake: the TCP stream as it is.
pub fn plain(stream: TcpStream) -> HandshakeFuture<TcpStream> {
    Box::pin(async move { Ok(stream) })
}

/// A TLS handshake with `acceptor`.
pub fn tls(
    acceptor: tokio_rustls::TlsAcceptor,
) -> impl Fn(TcpStream) -> HandshakeFuture<tokio_rustls::server::TlsStream<TcpStream>> + Send + Sync
{
    move |stream| {
        let acceptor = acceptor.clone();
        Box::pin(async move { acceptor.accept(stream).await })
    }
}

/// Raises this process's soft limit on open files to `wanted` (at most the
/// hard limit), so that [`Limits::max_connections`] can be reached; logs
/// what it could not get.
pub fn raise_open_files(wanted: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    let wanted = wanted as u64;
    let soft = lim.current.unwrap_or(u64::MAX);
    if soft >= wanted {
        return;
    }
    let target = lim.maximum.map_or(wanted, |hard| hard.min(wanted));
    lim.current = Some(target);
    match setrlimit(Resource::Nofile, lim) {
        Ok(()) if target >= wanted => debug!(open_files = target, "raised the open-file limit"),
        Ok(()) => warn!(open_files = target, wanted, "the hard open-file limit is below what the API's max_connections needs; raise LimitNOFILE"),
        Err(e) => warn!(error = %e, soft, wanted, "could not raise the open-file limit"),
    }
}

/// The remote address tonic recorded for a request, plain or TLS.
pub fn remote_ip<T>(r: &tonic::Request<T>) -> Option<IpAddr> {
    r.remote_addr().map(|a: SocketAddr| a.ip())
}

/// One source's failure bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures it may still have.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

/// Throttles sources that fail authentication repeatedly (see the module
/// documentation). Thread-safe; each call takes a short lock.
#[derive(Debug)]
pub struct FailureThrottle {
    sources: Mutex<HashMap<IpAddr, Bucket>>,
    burst: u32,
    refill: Duration,
    max_sources: usize,
}

impl Default for FailureThrottle {
    fn default() -> Self {
        FailureThrottle::new(FAILURE_BURST, FAILURE_REFILL, MAX_TRACKED_SOURCES)
    }
}

impl FailureThrottle {
    /// A throttle allowing `burst` failures per source, forgiving one per
    /// `refill`, remembering at most `max_sources` sources.
    pub fn new(burst: u32, refill: Duration, max_sources: usize) -> FailureThrottle {
        FailureThrottle {
            sources: Mutex::new(HashMap::new()),
            burst: burst.max(1),
            refill: refill.max(Duration::from_millis(1)),
            max_sources: max_sources.max(1),
        }
    }

    fn bucket_now(&self, b: Bucket, now: Instant) -> Bucket {
        let refilled =
            now.saturating_duration_since(b.at).as_secs_f64() / self.refill.as_secs_f64();
        Bucket {
            tokens: (b.tokens + refilled).min(f64::from(self.burst)),
            at: now,
        }
    }

    /// `Some(wait)` if `ip`'s source has used up its failures at `now`:
    /// refuse its request without checking it; `wait` is when it may try
    /// again.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let src = source_of(ip);
        let mut m = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let b = self.bucket_now(*m.get(&src)?, now);
        m.insert(src, b);
        (b.tokens < 1.0).then(|| self.refill.mul_f64(1.0 - b.tokens))
    }

    /// Records one authentication failure of `ip`'s source at `now`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let src = source_of(ip);
        let mut m = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if !m.contains_key(&src) && m.len() >= self.max_sources {
            // Forget the sources whose bucket is full again; if none is,
            // this one goes untracked rather than growing the map.
            let full = f64::from(self.burst);
            m.retain(|_, b| self.bucket_now(*b, now).tokens < full);
            if m.len() >= self.max_sources {
                return;
            }
        }
        let b = m.get(&src).map_or(
            Bucket {
                tokens: f64::from(self.burst),
                at: now,
            },
            |b| self.bucket_now(*b, now),
        );
        m.insert(
            src,
            Bucket {
                tokens: (b.tokens - 1.0).max(0.0),
                at: now,
            },
        );
    }

    /// Sources remembered (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.sources.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_are_ipv4_hosts_and_ipv6_slash_64s() {
        assert_eq!(source_of(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("2001:db8:1:2:ffff::9")), ip("2001:db8:1:2::"));
        assert_ne!(source_of(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn a_source_is_throttled_after_its_burst_and_forgiven_over_time() {
        let t = FailureThrottle::new(3, Duration::from_secs(6), 100);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert_eq!(t.blocked(a, t0), None, "unknown sources pass");
        for _ in 0..3 {
            assert_eq!(t.blocked(a, t0), None);
            t.failed(a, t0);
        }
        let wait = t.blocked(a, t0).expect("throttled after 3 failures");
        assert_eq!(wait, Duration::from_secs(6));
        // Another source, and another host of the same IPv6 /64, are apart.
        assert_eq!(t.blocked(ip("192.0.2.2"), t0), None);
        // One failure is forgiven after 6 s, and only one.
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(t.blocked(a, t1), None);
        t.failed(a, t1);
        assert!(t.blocked(a, t1).is_some());
        assert!(t.blocked(a, t1 + Duration::from_secs(18)).is_none());
    }

    #[test]
    fn an_ipv6_attacker_cannot_escape_by_changing_its_interface_id() {
        let t = FailureThrottle::new(2, Duration::from_secs(60), 100);
        let now = Instant::now();
        for host in ["2001:db8::1", "2001:db8::2", "2001:db8::ffff:1"] {
            t.failed(ip(host), now);
        }
        assert!(t.blocked(ip("2001:db8::abcd"), now).is_some());
        assert!(t.blocked(ip("2001:db8:0:1::1"), now).is_none());
        assert_eq!(t.tracked(), 1);
    }

    #[test]
    fn the_throttle_never_grows_past_its_bound() {
        let t = FailureThrottle::new(1, Duration::from_secs(1), 4);
        let t0 = Instant::now();
        for i in 0..100u32 {
            t.failed(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(
            t.tracked(),
            4,
            "full of throttled sources: new ones untracked"
        );
        // Once the old buckets are full again they make room.
        let later = t0 + Duration::from_secs(5);
        t.failed(ip("198.51.100.7"), later);
        assert!(t.tracked() <= 4);
        assert!(t.blocked(ip("198.51.100.7"), later).is_some());
    }

    #[test]
    fn per_source_admission_counts_and_releases() {
        let p = PerSource::default();
        let a = ip("10.0.0.1");
        assert!(p.try_admit(a, 2) && p.try_admit(a, 2));
        assert!(!p.try_admit(a, 2));
        assert!(p.try_admit(ip("10.0.0.2"), 2));
        p.release(a);
        assert!(p.try_admit(a, 2));
        p.release(a);
        p.release(a);
        assert!(
            !p.0.lock().unwrap().contains_key(&a),
            "an idle source is forgotten"
        );
    }
}
