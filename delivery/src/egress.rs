//! Egress through an HTTP proxy (`delivery.proxy_url`), so receivers can
//! allow-list one fixed address.
//!
//! reqwest cannot be pointed at the proxy directly: it would send
//! `CONNECT name:port` and let the proxy resolve the name (so an address
//! Herald never checked could be reached), and it sends plain-http requests
//! to the proxy in absolute form. Instead the delivery client uses this
//! in-process relay on `127.0.0.1` as its proxy. For every target the relay
//! resolves the name, drops the addresses the network guard refuses (unless
//! private targets are allowed), and asks the real proxy for
//! `CONNECT <checked ip>:<port>`, so the proxy never resolves anything.
//! TLS runs inside that tunnel between reqwest and the receiver, so the
//! certificate is still checked against the webhook's host name.
//! Plain-http targets are tunnelled the same way: the request is sent in
//! origin form over a tunnel of its own.
//!
//! The relay runs on the Tokio runtime that started it and stops when the
//! last clone of its [`Egress`] handle is dropped. Only the delivery client
//! can use it: it answers 407 to any request without the random
//! credentials the client was given.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader,
};
use tokio::net::{TcpListener, TcpStream};
use url::{Host, Url};

use crate::net_guard::{BlockedTarget, is_denied};

/// How long the proxy has to accept the connection and answer the CONNECT.
const TUNNEL_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest answer head the proxy may send to a CONNECT.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long a client of the relay has to send a request's head, also
/// between requests on a kept-alive connection: longer than the delivery
/// client keeps an idle connection (90 s), so the client always closes
/// first and never sends on a connection the relay is closing.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// The user name of the relay's own credentials.
const RELAY_USER: &str = "herald";

/// The bodies the relay answers with: the receiver's, or its own short text.
type RelayBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The proxy URL is not `http://[user:pass@]host:port`. The URL itself
    /// is not quoted: it may carry credentials.
    #[error(
        "delivery.proxy_url must be an http:// URL with a host and a port, such as http://user:pass@proxy.internal:3128"
    )]
    BadProxyUrl,
    /// Started outside a Tokio runtime.
    #[error("the egress relay must be started inside a Tokio runtime")]
    NoRuntime,
    /// No loopback port could be bound.
    #[error("the egress relay cannot listen on 127.0.0.1")]
    Listen(#[source] io::Error),
    /// reqwest refused the relay's own address as a proxy.
    #[error("the egress relay's address is not a usable proxy")]
    Proxy(#[source] reqwest::Error),
}

/// Why a target's addresses cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Every address the name resolves to is refused by the network guard.
    #[error(transparent)]
    Blocked(#[from] BlockedTarget),
    /// The name does not resolve.
    #[error("cannot resolve {host}: {error}")]
    Lookup {
        /// The name that was looked up.
        host: String,
        /// What the resolver said.
        error: io::Error,
    },
}

/// Resolves `host` (a name, or an IP literal, IPv6 with or without
/// brackets) and answers its addresses with `port`, without those
/// [`is_denied`] refuses unless `allow_private`.
///
/// # Errors
/// [`ResolveError::Blocked`] when every address is refused,
/// [`ResolveError::Lookup`] when the name does not resolve.
pub async fn resolve_checked(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let name = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let lookup_error = |error: io::Error| ResolveError::Lookup {
        host: name.to_owned(),
        error,
    };
    let found: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(lookup_error)?
        .collect();
    if found.is_empty() {
        return Err(lookup_error(io::Error::new(
            io::ErrorKind::NotFound,
            "no address",
        )));
    }
    if allow_private {
        return Ok(found);
    }
    let allowed: Vec<SocketAddr> = found.into_iter().filter(|a| !is_denied(a.ip())).collect();
    if allowed.is_empty() {
        return Err(BlockedTarget::new(name).into());
    }
    Ok(allowed)
}

/// A running relay; cloning shares it, and dropping the last clone stops
/// it (tunnels already open finish on their own).
#[derive(Debug, Clone)]
pub struct Egress {
    running: Arc<Running>,
}

/// The relay's task and how reqwest reaches it.
struct Running {
    addr: SocketAddr,
    /// `http://herald:<token>@127.0.0.1:<port>` for every request.
    proxy: reqwest::Proxy,
    task: tokio::task::AbortHandle,
}

impl fmt::Debug for Running {
    // Not the proxy: its credentials are the relay's password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Egress {
    /// Starts a relay on a free loopback port that tunnels through the
    /// proxy at `proxy_url` (`http://[user:pass@]host:port`). With
    /// `allow_private_targets` false it refuses every target whose
    /// addresses are all denied by the network guard, and never tunnels to
    /// a denied address. Must be called inside a Tokio runtime, on which the
    /// relay then runs.
    ///
    /// # Errors
    /// An unusable proxy URL, no runtime, or no loopback port.
    pub fn start(proxy_url: &str, allow_private_targets: bool) -> Result<Self, EgressError> {
        let upstream = Upstream::parse(proxy_url)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| EgressError::NoRuntime)?;
        let std_listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(EgressError::Listen)?;
        std_listener
            .set_nonblocking(true)
            .map_err(EgressError::Listen)?;
        let addr = std_listener.local_addr().map_err(EgressError::Listen)?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(std_listener).map_err(EgressError::Listen)?
        };
        // Any local process could connect to the port: only the holder of
        // this password gets through.
        let password = uuid::Uuid::new_v4().simple().to_string();
        let proxy = reqwest::Proxy::all(format!("http://{addr}"))
            .map_err(EgressError::Proxy)?
            .basic_auth(RELAY_USER, &password);
        let relay = Arc::new(Relay {
            upstream,
            allow_private: allow_private_targets,
            authorization: basic_authorization(RELAY_USER, &password),
        });
        let task = runtime.spawn(serve(listener, relay)).abort_handle();
        tracing::info!(relay.address = %addr, "deliveries go through the proxy in delivery.proxy_url");
        Ok(Self {
            running: Arc::new(Running { addr, proxy, task }),
        })
    }

    /// The proxy setting for the delivery client: this relay, with its
    /// credentials.
    #[must_use]
    pub fn proxy(&self) -> reqwest::Proxy {
        self.running.proxy.clone()
    }

    /// Where the relay listens.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.running.addr
    }
}

/// The real proxy, from `delivery.proxy_url`.
struct Upstream {
    /// A name or an IP address, without brackets.
    host: String,
    port: u16,
    /// `Basic …` for `Proxy-Authorization`, when the URL has credentials.
    authorization: Option<SecretString>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("authorization", &self.authorization.is_some())
            .finish()
    }
}

impl Upstream {
    fn parse(raw: &str) -> Result<Self, EgressError> {
        let url = Url::parse(raw.trim()).map_err(|_| EgressError::BadProxyUrl)?;
        if url.scheme() != "http" {
            return Err(EgressError::BadProxyUrl);
        }
        let host = match url.host() {
            Some(Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(EgressError::BadProxyUrl),
        };
        let port = url
            .port_or_known_default()
            .ok_or(EgressError::BadProxyUrl)?;
        let authorization = (!url.username().is_empty() || url.password().is_some()).then(|| {
            SecretString::from(basic_authorization(
                &percent_decode(url.username()),
                &percent_decode(url.password().unwrap_or_default()),
            ))
        });
        Ok(Self {
            host,
            port,
            authorization,
        })
    }
}

/// `Basic base64(user:password)`.
fn basic_authorization(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// Undoes the URL's `%XX` escapes (user names and passwords are kept
/// escaped in a parsed URL); a `%` not followed by two hex digits stays.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(h), Some(l)) = (hex(h), hex(l))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `ip:port`, the IPv6 address in brackets.
fn authority(target: SocketAddr) -> String {
    match target.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", target.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", target.port()),
    }
}

/// The CONNECT request for `target`, with the proxy's credentials if any.
fn connect_request(target: SocketAddr, authorization: Option<&str>) -> String {
    let authority = authority(target);
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(value) = authorization {
        request.push_str("Proxy-Authorization: ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}

/// The status code of an HTTP/1.x answer head, if its first line is one.
fn parse_status(head: &[u8]) -> Option<u16> {
    let end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&head[..end])
        .ok()?
        .trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    if !matches!(parts.next()?, "HTTP/1.0" | "HTTP/1.1") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse::<u16>().ok().filter(|c| (100..600).contains(c))
}

/// Why no tunnel was opened.
#[derive(Debug, thiserror::Error)]
enum TunnelError {
    #[error("the proxy did not answer within {secs}s", secs = TUNNEL_TIMEOUT.as_secs())]
    TimedOut,
    #[error("talking to the proxy failed: {0}")]
    Io(io::Error),
    #[error("the proxy closed the connection before answering")]
    Closed,
    #[error("the proxy's answer is longer than {limit} bytes", limit = MAX_HEAD_BYTES)]
    TooLong,
    #[error("the proxy's answer is not HTTP")]
    NotHttp,
    #[error("the proxy answered {0}")]
    Refused(u16),
}

/// Reads an answer head, through its empty line, and no further; at most
/// [`MAX_HEAD_BYTES`].
async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, TunnelError> {
    let limit = u64::try_from(MAX_HEAD_BYTES).unwrap_or(u64::MAX);
    let mut limited = (&mut *reader).take(limit);
    let mut head = Vec::new();
    loop {
        let start = head.len();
        let n = limited
            .read_until(b'\n', &mut head)
            .await
            .map_err(TunnelError::Io)?;
        if n == 0 {
            return Err(if head.len() >= MAX_HEAD_BYTES {
                TunnelError::TooLong
            } else {
                TunnelError::Closed
            });
        }
        let line = &head[start..];
        if line == b"\r\n" || line == b"\n" {
            return Ok(head);
        }
    }
}

/// Connects to the proxy and asks it for a tunnel to `target`. Answers the
/// connection once the proxy said 2xx; anything it sent past its answer
/// head stays in the buffer.
async fn open_tunnel(
    upstream: &Upstream,
    target: SocketAddr,
) -> Result<BufReader<TcpStream>, TunnelError> {
    let stream = TcpStream::connect((upstream.host.as_str(), upstream.port))
        .await
        .map_err(TunnelError::Io)?;
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    let request = connect_request(
        target,
        upstream.authorization.as_ref().map(|a| a.expose_secret()),
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(TunnelError::Io)?;
    stream.flush().await.map_err(TunnelError::Io)?;
    let head = read_head(&mut stream).await?;
    match parse_status(&head) {
        Some(code) if (200..300).contains(&code) => Ok(stream),
        Some(code) => Err(TunnelError::Refused(code)),
        None => Err(TunnelError::NotHttp),
    }
}

/// Why the relay refused a request; each is an answer to reqwest.
#[derive(Debug)]
enum Refusal {
    Resolve(ResolveError),
    Tunnel(TunnelError),
}

impl Refusal {
    fn response(&self) -> Response<RelayBody> {
        match self {
            Self::Resolve(e @ ResolveError::Blocked(_)) => {
                text(StatusCode::FORBIDDEN, &e.to_string())
            }
            Self::Resolve(e @ ResolveError::Lookup { .. }) => {
                text(StatusCode::BAD_GATEWAY, &e.to_string())
            }
            Self::Tunnel(e @ TunnelError::TimedOut) => {
                text(StatusCode::GATEWAY_TIMEOUT, &e.to_string())
            }
            Self::Tunnel(e) => text(StatusCode::BAD_GATEWAY, &e.to_string()),
        }
    }
}

/// A short plain-text answer from the relay itself.
fn text(status: StatusCode, body: &str) -> Response<RelayBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_owned()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// What every connection of the relay shares.
struct Relay {
    upstream: Upstream,
    allow_private: bool,
    /// The `Proxy-Authorization` the delivery client sends.
    authorization: String,
}

/// Accepts connections until the task is aborted.
async fn serve(listener: TcpListener, relay: Arc<Relay>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: wait a little
                // rather than spin.
                tracing::warn!(error.message = %e, "egress relay: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let relay = Arc::clone(&relay);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let relay = Arc::clone(&relay);
                async move { Ok::<_, Infallible>(relay.handle(req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                tracing::debug!(error.message = %e, "egress relay: a client connection ended");
            }
        });
    }
}

impl Relay {
    async fn handle(&self, req: Request<Incoming>) -> Response<RelayBody> {
        let authorized = req
            .headers()
            .get(header::PROXY_AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == self.authorization.as_bytes());
        if !authorized {
            let mut response = text(
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "only Herald's delivery client may use this relay",
            );
            response.headers_mut().insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"herald-egress\""),
            );
            return response;
        }
        if req.method() == Method::CONNECT {
            self.connect(req).await
        } else {
            self.forward(req).await
        }
    }

    /// Resolves and checks `host`, then opens a tunnel to the first of its
    /// addresses the proxy can reach.
    async fn tunnel(&self, host: &str, port: u16) -> Result<BufReader<TcpStream>, Refusal> {
        let addrs = resolve_checked(host, port, self.allow_private)
            .await
            .map_err(|e| {
                tracing::warn!(endpoint.host = %host, endpoint.port = port, error.message = %e, "egress relay: target refused");
                Refusal::Resolve(e)
            })?;
        let mut last = None;
        for addr in addrs {
            let opened = tokio::time::timeout(TUNNEL_TIMEOUT, open_tunnel(&self.upstream, addr))
                .await
                .unwrap_or_else(|_| Err(TunnelError::TimedOut));
            match opened {
                Ok(tunnel) => return Ok(tunnel),
                // The proxy could not reach this address: another may do.
                Err(e @ TunnelError::Refused(_)) => {
                    tracing::warn!(endpoint.host = %host, endpoint.address = %addr, error.message = %e, "egress relay: the proxy refused a tunnel");
                    last = Some(e);
                }
                // The proxy itself is the problem: the next address would
                // not fare better.
                Err(e) => {
                    tracing::warn!(endpoint.host = %host, endpoint.address = %addr, error.message = %e, "egress relay: no tunnel through the proxy");
                    return Err(Refusal::Tunnel(e));
                }
            }
        }
        Err(Refusal::Tunnel(last.unwrap_or(TunnelError::Closed)))
    }

    /// `CONNECT host:port` (https targets): answered 200 once the proxy's
    /// tunnel is open, then the two are spliced.
    async fn connect(&self, req: Request<Incoming>) -> Response<RelayBody> {
        let Some((host, port)) = req
            .uri()
            .authority()
            .and_then(|a| Some((a.host().to_owned(), a.port_u16()?)))
        else {
            return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
        };
        let mut tunnel = match self.tunnel(&host, port).await {
            Ok(t) => t,
            Err(refusal) => return refusal.response(),
        };
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    let mut client = TokioIo::new(upgraded);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut tunnel).await {
                        tracing::debug!(endpoint.host = %host, error.message = %e, "egress relay: a tunnel ended with an error");
                    }
                }
                Err(e) => {
                    tracing::debug!(endpoint.host = %host, error.message = %e, "egress relay: the client left before the tunnel opened");
                }
            }
        });
        Response::new(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
    }

    /// An absolute-form request (`POST http://host:port/path`, http
    /// targets): sent in origin form over a tunnel of its own.
    async fn forward(&self, req: Request<Incoming>) -> Response<RelayBody> {
        let uri = req.uri();
        if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
            return text(
                StatusCode::BAD_REQUEST,
                "only CONNECT and absolute http:// requests are relayed",
            );
        }
        let Some(target) = uri.authority().cloned() else {
            return text(StatusCode::BAD_REQUEST, "the request has no host");
        };
        let host = target.host().to_owned();
        let port = target.port_u16().unwrap_or(80);
        let tunnel = match self.tunnel(&host, port).await {
            Ok(t) => t,
            Err(refusal) => return refusal.response(),
        };
        let (mut parts, body) = req.into_parts();
        parts.uri = parts
            .uri
            .path_and_query()
            .cloned()
            .map_or_else(|| Uri::from_static("/"), Uri::from);
        parts.version = http::Version::HTTP_11;
        // The relay's own credentials stay here; one request per tunnel.
        parts.headers.remove(header::PROXY_AUTHORIZATION);
        parts.headers.remove("proxy-connection");
        if !parts.headers.contains_key(header::HOST)
            && let Ok(value) = HeaderValue::from_str(target.as_str())
        {
            parts.headers.insert(header::HOST, value);
        }
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        let handshake = hyper::client::conn::http1::handshake(TokioIo::new(tunnel)).await;
        let (mut sender, connection) = match handshake {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(endpoint.host = %host, error.message = %e, "egress relay: the tunnel failed");
                return text(StatusCode::BAD_GATEWAY, "the tunnel failed");
            }
        };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error.message = %e, "egress relay: a forwarded request's connection ended with an error");
            }
        });
        match sender.send_request(Request::from_parts(parts, body)).await {
            Ok(response) => {
                let mut response = response.map(|body| body.boxed_unsync());
                response.headers_mut().remove(header::CONNECTION);
                response
            }
            Err(e) => {
                tracing::warn!(endpoint.host = %host, error.message = %e, "egress relay: the endpoint did not answer through the tunnel");
                text(
                    StatusCode::BAD_GATEWAY,
                    "the endpoint did not answer through the proxy",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use herald_shared::runtime::config::SecuritySettings;

    #[test]
    fn proxy_urls_give_host_port_and_credentials() {
        let up = Upstream::parse("http://user:p%40ss@proxy.internal:3128").unwrap();
        assert_eq!((up.host.as_str(), up.port), ("proxy.internal", 3128));
        assert_eq!(
            up.authorization.unwrap().expose_secret(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("user:p@ss")
            )
        );
        let up = Upstream::parse("http://10.0.0.7:8080/").unwrap();
        assert_eq!((up.host.as_str(), up.port), ("10.0.0.7", 8080));
        assert!(up.authorization.is_none());
        let up = Upstream::parse("http://[fd00::7]:3128").unwrap();
        assert_eq!((up.host.as_str(), up.port), ("fd00::7", 3128));
        for bad in [
            "https://proxy.internal:3128",
            "socks5://proxy.internal:1080",
            "proxy.internal:3128",
            "http://:3128",
            "",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_proxy_url_never_shows_in_debug_output() {
        let up = Upstream::parse("http://user:hunter2@proxy.internal:3128").unwrap();
        assert!(!format!("{up:?}").contains("hunter2"));
        let err = Upstream::parse("https://user:hunter2@proxy.internal:3128").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn percent_escapes_are_undone() {
        assert_eq!(percent_decode("a%3Ab%25c"), "a:b%c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn connect_requests_name_the_checked_address() {
        let v4: SocketAddr = "93.184.216.34:443".parse().unwrap();
        assert_eq!(
            connect_request(v4, None),
            "CONNECT 93.184.216.34:443 HTTP/1.1\r\nHost: 93.184.216.34:443\r\n\r\n"
        );
        let v6: SocketAddr = "[2606:2800:220:1::1]:8443".parse().unwrap();
        assert_eq!(
            connect_request(v6, Some("Basic dTpw")),
            "CONNECT [2606:2800:220:1::1]:8443 HTTP/1.1\r\nHost: [2606:2800:220:1::1]:8443\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
    }

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(
            parse_status(b"HTTP/1.0 200 Connection established\r\n\r\n"),
            Some(200)
        );
        assert_eq!(parse_status(b"HTTP/1.1 200\r\n\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.1 407 Proxy Authentication Required\r\n"),
            Some(407)
        );
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n"[..],
            b"HTTP/2 200\r\n",
            b"HTTP/1.1 20 OK\r\n",
            b"HTTP/1.1 700 Odd\r\n",
            b"HTTP/1.1 200 OK",
            b"",
        ] {
            assert_eq!(parse_status(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[tokio::test]
    async fn answer_heads_are_read_to_their_end_and_bounded() {
        let mut input: &[u8] = b"HTTP/1.1 200 OK\r\nVia: x\r\n\r\nafter";
        let head = read_head(&mut input).await.unwrap();
        assert_eq!(head, b"HTTP/1.1 200 OK\r\nVia: x\r\n\r\n");
        assert_eq!(input, b"after");

        let mut closed: &[u8] = b"HTTP/1.1 200 OK\r\n";
        assert!(matches!(
            read_head(&mut closed).await,
            Err(TunnelError::Closed)
        ));

        let long = format!(
            "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        let mut long = long.as_bytes();
        assert!(matches!(
            read_head(&mut long).await,
            Err(TunnelError::TooLong)
        ));
    }

    #[tokio::test]
    async fn refused_addresses_are_dropped_before_any_tunnel() {
        let blocked = resolve_checked("127.0.0.1", 80, false).await;
        assert!(
            matches!(&blocked, Err(ResolveError::Blocked(_))),
            "{blocked:?}"
        );
        assert!(
            blocked
                .unwrap_err()
                .to_string()
                .starts_with("blocked: 127.0.0.1 resolves only to")
        );
        assert!(matches!(
            resolve_checked("[::1]", 443, false).await,
            Err(ResolveError::Blocked(_))
        ));
        assert_eq!(
            resolve_checked("[::1]", 443, true).await.unwrap(),
            vec!["[::1]:443".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve_checked("93.184.216.34", 443, false).await.unwrap(),
            vec!["93.184.216.34:443".parse::<SocketAddr>().unwrap()]
        );
    }

    fn security(allow_private: bool) -> SecuritySettings {
        SecuritySettings {
            allow_http: true,
            allow_insecure_tls: false,
            allow_private_targets: allow_private,
            encryption_key: None,
        }
    }

    /// A CONNECT proxy on loopback that records each request head, opens
    /// the tunnel it asks for (502 when it cannot) and splices it.
    async fn fake_proxy() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (heads, seen) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let heads = heads.clone();
                tokio::spawn(async move {
                    let mut client = BufReader::new(stream);
                    let Ok(head) = read_head(&mut client).await else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let target = head
                        .strip_prefix("CONNECT ")
                        .and_then(|rest| rest.split(' ').next())
                        .unwrap_or_default()
                        .to_owned();
                    let _ = heads.send(head);
                    match TcpStream::connect(target.as_str()).await {
                        Ok(mut origin) => {
                            let _ = client
                                .write_all(b"HTTP/1.0 200 Connection established\r\n\r\n")
                                .await;
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut origin).await;
                        }
                        Err(_) => {
                            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        }
                    }
                });
            }
        });
        (port, seen)
    }

    /// An http endpoint that records the head of the one request it takes
    /// and answers 200 `ok`.
    async fn fake_origin() -> (u16, tokio::sync::oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let mut stream = BufReader::new(stream);
            let Ok(head) = read_head(&mut stream).await else {
                return;
            };
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            // The two-byte body, read so that closing sends no reset.
            let mut body = [0u8; 2];
            let _ = stream.read_exact(&mut body).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
            let _ = stream.shutdown().await;
            // Until the client has read the answer and closed.
            let _ = stream.read(&mut [0u8; 1]).await;
        });
        (port, rx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_targets_are_resolved_checked_and_tunnelled_in_origin_form() {
        let (proxy_port, mut heads) = fake_proxy().await;
        let (origin_port, origin_head) = fake_origin().await;
        let egress = Egress::start(&format!("http://u:p@127.0.0.1:{proxy_port}"), true).unwrap();
        let client =
            crate::net_guard::delivery_client(&security(true), true, Some(&egress)).unwrap();
        let response = client
            .post(format!("http://localhost:{origin_port}/hook?token=1"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "ok");

        let origin_head = origin_head.await.unwrap();
        assert!(
            origin_head.starts_with("POST /hook?token=1 HTTP/1.1\r\n"),
            "{origin_head}"
        );
        assert!(
            !origin_head
                .to_ascii_lowercase()
                .contains("proxy-authorization"),
            "{origin_head}"
        );
        // Every CONNECT named an address, never `localhost`, with the
        // proxy's credentials; the one that worked is the origin's.
        let mut connects = Vec::new();
        while let Ok(head) = heads.try_recv() {
            connects.push(head);
        }
        assert!(!connects.is_empty());
        for head in &connects {
            let target = head
                .strip_prefix("CONNECT ")
                .and_then(|rest| rest.split(' ').next())
                .unwrap();
            let addr: SocketAddr = target.parse().unwrap();
            assert!(addr.ip().is_loopback(), "{head}");
            assert_eq!(addr.port(), origin_port);
            assert!(
                head.contains("\r\nProxy-Authorization: Basic dTpw\r\n"),
                "{head}"
            );
        }
        assert!(
            connects
                .iter()
                .any(|h| h.starts_with(&format!("CONNECT 127.0.0.1:{origin_port} HTTP/1.1\r\n"))),
            "{connects:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_targets_never_reach_the_proxy() {
        let (proxy_port, mut heads) = fake_proxy().await;
        let egress = Egress::start(&format!("http://127.0.0.1:{proxy_port}"), false).unwrap();
        let client =
            crate::net_guard::delivery_client(&security(false), true, Some(&egress)).unwrap();
        let plain = client.post("http://localhost:9/hook").send().await.unwrap();
        assert_eq!(plain.status(), 403);
        assert!(
            plain
                .text()
                .await
                .unwrap()
                .starts_with("blocked: localhost")
        );
        assert!(
            client
                .post("https://localhost:9/hook")
                .send()
                .await
                .is_err()
        );
        assert!(heads.try_recv().is_err());
    }

    #[tokio::test]
    async fn only_the_delivery_client_may_use_the_relay() {
        let (proxy_port, _heads) = fake_proxy().await;
        let egress = Egress::start(&format!("http://127.0.0.1:{proxy_port}"), true).unwrap();
        let mut stream = TcpStream::connect(egress.local_addr()).await.unwrap();
        stream
            .write_all(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
            .await
            .unwrap();
        let mut stream = BufReader::new(stream);
        let head = read_head(&mut stream).await.unwrap();
        assert_eq!(parse_status(&head), Some(407));
    }

    #[tokio::test]
    async fn the_relay_stops_with_its_last_handle() {
        let (proxy_port, _heads) = fake_proxy().await;
        let egress = Egress::start(&format!("http://127.0.0.1:{proxy_port}"), true).unwrap();
        let addr = egress.local_addr();
        let clone = egress.clone();
        drop(egress);
        assert!(TcpStream::connect(addr).await.is_ok());
        drop(clone);
        // The aborted task drops its listener when the runtime next polls it.
        let mut refused = false;
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "the relay still accepts connections");
    }
}
