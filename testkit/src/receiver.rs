//! A real HTTP endpoint on a random loopback port that records every
//! request and answers a status the test can change.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use herald_delivery::signing::WebhookSecret;
use tokio_util::sync::CancellationToken;

/// One request as the endpoint saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: std::time::Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    /// Checks both signatures as a receiver would, with the webhook's secret.
    pub fn signatures_valid(&self, secret: &str) -> bool {
        let Ok(secret) = WebhookSecret::parse(secret) else {
            return false;
        };
        let (Some(id), Some(ts), Some(sig), Some(hex)) = (
            self.header("webhook-id"),
            self.header("webhook-timestamp")
                .and_then(|t| t.parse::<i64>().ok()),
            self.header("webhook-signature"),
            self.header("x-webhook-signature"),
        ) else {
            return false;
        };
        let fresh = (chrono_now() - ts).abs() <= 300;
        fresh
            && secret.verify_v1(id, ts, &self.body, sig)
            && secret.verify_sha256_hex(&self.body, hex)
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or_default())
        .unwrap_or_default()
}

#[derive(Clone)]
struct Shared {
    requests: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    /// Milliseconds to wait before answering.
    delay_ms: Arc<AtomicU64>,
    /// Answers to give first, in order, before falling back to `status`.
    script: Arc<Mutex<VecDeque<Scripted>>>,
    /// The body of every answer (empty by default).
    body: Arc<Mutex<String>>,
}

/// One scripted answer: a status and extra headers.
type Scripted = (u16, Vec<(&'static str, String)>);

/// The endpoint; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    /// Serving https with a self-signed certificate.
    tls: bool,
    shared: Shared,
    stop: CancellationToken,
}

impl Receiver {
    pub async fn start() -> Self {
        let (listener, shared, app) = Self::parts().await;
        let addr = listener.local_addr().expect("receiver address");
        let stop = CancellationToken::new();
        let cancel = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await;
        });
        Self {
            addr,
            tls: false,
            shared,
            stop,
        }
    }

    /// The same endpoint over https, with a self-signed certificate (for
    /// `verify_ssl: false`). A client that checks certificates fails the
    /// handshake and is not recorded.
    pub async fn start_tls() -> Self {
        Self::serve_tls(|builder| builder.with_no_client_auth()).await
    }

    /// An https endpoint (self-signed, like [`Receiver::start_tls`]) that
    /// requires a TLS client certificate issued by its own test CA: a client
    /// without one, or with one from another CA, fails the handshake and is
    /// not recorded. Answers the receiver and a client certificate and key
    /// it accepts, in PEM.
    pub async fn start_mtls() -> (Self, ClientPem) {
        use tokio_rustls::rustls;
        let ca = TestCa::new("Herald test client CA");
        let client = ca.issue("herald-client");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der.clone()).expect("the CA certificate");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .expect("a client verifier");
        let receiver =
            Self::serve_tls(move |builder| builder.with_client_cert_verifier(verifier)).await;
        (receiver, client)
    }

    async fn serve_tls(
        auth: impl FnOnce(
            tokio_rustls::rustls::ConfigBuilder<
                tokio_rustls::rustls::ServerConfig,
                tokio_rustls::rustls::WantsVerifier,
            >,
        ) -> tokio_rustls::rustls::ConfigBuilder<
            tokio_rustls::rustls::ServerConfig,
            tokio_rustls::rustls::server::WantsServerCert,
        >,
    ) -> Self {
        use tokio_rustls::rustls;
        let (listener, shared, app) = Self::parts().await;
        let addr = listener.local_addr().expect("receiver address");
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("a self-signed certificate");
        let key =
            rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
        let config = auth(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("TLS versions"),
        )
        .with_single_cert(vec![certified.cert.der().clone()], key.into())
        .expect("the certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let stop = CancellationToken::new();
        let cancel = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = cancel.cancelled() => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            tls: true,
            shared,
            stop,
        }
    }

    async fn parts() -> (tokio::net::TcpListener, Shared, Router) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let shared = Shared {
            requests: Arc::new(Mutex::new(Vec::new())),
            status: Arc::new(AtomicU16::new(200)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            script: Arc::new(Mutex::new(VecDeque::new())),
            body: Arc::new(Mutex::new(String::new())),
        };
        let app = Router::new()
            .route("/{*path}", post(record))
            .with_state(shared.clone());
        (listener, shared, app)
    }

    /// A URL on this endpoint.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Answer this status from now on.
    pub fn respond_with(&self, status: u16) {
        self.shared.status.store(status, Ordering::Release);
    }

    /// Answer this status with this body from now on.
    pub fn respond_with_body(&self, status: u16, body: &str) {
        body.clone_into(&mut self.shared.body.lock().expect("lock"));
        self.respond_with(status);
    }

    /// Give these answers to the next requests, in order, then go back to
    /// the usual status.
    pub fn script(&self, answers: Vec<(u16, Vec<(&'static str, String)>)>) {
        self.shared.script.lock().expect("lock").extend(answers);
    }

    /// Answer only after this long (the request is recorded on arrival).
    pub fn respond_after(&self, delay: std::time::Duration) {
        self.shared.delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
    }

    pub fn requests(&self) -> Vec<Received> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// Requests made to one path.
    pub fn requests_to(&self, path: &str) -> Vec<Received> {
        let path = format!("/{}", path.trim_start_matches('/'));
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn record(
    State(shared): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    shared.requests.lock().expect("lock").push(Received {
        at: std::time::Instant::now(),
        path: uri.path().to_owned(),
        headers,
        body,
    });
    let scripted = shared.script.lock().expect("lock").pop_front();
    let delay = shared.delay_ms.load(Ordering::Acquire);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let (status, extra) =
        scripted.unwrap_or_else(|| (shared.status.load(Ordering::Acquire), Vec::new()));
    let body = shared.body.lock().expect("lock").clone();
    let mut response =
        (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
    for (name, value) in extra {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

/// A TLS client certificate and its key, in PEM.
#[derive(Debug, Clone)]
pub struct ClientPem {
    pub certificate: String,
    pub private_key: String,
}

/// A certificate authority for tests, made fresh each time.
pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    /// The CA's own certificate.
    pub der: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("the CA certificate");
        Self {
            der: cert.der().clone(),
            params,
            key,
        }
    }

    /// A client certificate for `name` signed by this CA.
    pub fn issue(&self, name: &str) -> ClientPem {
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_owned()]).expect("client params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().expect("a client key");
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .expect("the client certificate");
        ClientPem {
            certificate: pem("CERTIFICATE", cert.der()),
            private_key: pem("PRIVATE KEY", &key.serialize_der()),
        }
    }
}

/// DER as a PEM block.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
