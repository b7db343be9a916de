//! Egress through a proxy (`delivery.proxy_url`), against a real CONNECT
//! proxy (tinyproxy): deliveries reach https and http receivers through it,
//! the proxy is asked for the address Herald resolved and checked (never
//! for a name, and never for a plain-http request in absolute form), and a
//! target the guard refuses never reaches the proxy at all. And TLS client
//! certificates (mTLS), against a receiver that requires one.

use std::time::Duration;

use herald_testkit::{Receiver, TestEnv, TinyProxy, wait_until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// The receiver's port.
fn port_of(receiver: &Receiver) -> u16 {
    url::Url::parse(&receiver.url("x"))
        .expect("a receiver URL")
        .port()
        .expect("a port")
}

/// The receiver's URL for `path`, with the name `localhost` instead of
/// its address.
fn by_name(receiver: &Receiver, path: &str) -> String {
    receiver
        .url(path)
        .replacen("://127.0.0.1:", "://localhost:", 1)
}

/// A host name that resolves to this machine, other than `localhost`
/// (which is refused by name before any lookup).
async fn loopback_name() -> String {
    let mut names: Vec<String> = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| vec![h.trim().to_owned()])
        .unwrap_or_default();
    names.extend(["runsc", "vm", "ip6-localhost", "ip6-loopback"].map(str::to_owned));
    for name in names {
        let addrs: Vec<_> = match tokio::net::lookup_host((name.as_str(), 80)).await {
            Ok(addrs) => addrs.collect(),
            Err(_) => continue,
        };
        if !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()) {
            return name;
        }
    }
    panic!("no host name of this machine resolves to a loopback address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_go_through_the_proxy_to_the_checked_address() {
    let proxy = TinyProxy::start().await;
    let proxy_url = proxy.url();
    let env = TestEnv::with(&[
        ("HERALD__DELIVERY__PROXY_URL", proxy_url.as_str()),
        ("HERALD__SECURITY__ALLOW_INSECURE_TLS", "true"),
    ])
    .await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let secure = Receiver::start_tls().await;
    let plain = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    // Both by name: the proxy must be asked for the address, not the name.
    let tls_hook = api
        .create_webhook(
            &token,
            json!({"name": "tls", "url": by_name(&secure, "tls"), "verify_ssl": false}),
        )
        .await;
    let plain_hook = api
        .create_webhook(
            &token,
            json!({"name": "plain", "url": by_name(&plain, "plain")}),
        )
        .await;
    let id = api
        .send_event(&token, json!({"event_type": "a.b", "data": {"n": 1}}))
        .await;

    for (receiver, path, hook) in [(&secure, "tls", &tls_hook), (&plain, "plain", &plain_hook)] {
        let r = wait_until(WAIT, &format!("the delivery to /{path}"), || async {
            receiver.requests_to(path).into_iter().next()
        })
        .await;
        assert_eq!(r.header("webhook-id"), Some(id.as_str()));
        assert!(r.signatures_valid(hook["secret"].as_str().expect("a secret")));
        assert_eq!(r.json()["data"], json!({"n": 1}));
    }

    // tinyproxy tunnelled both, to 127.0.0.1 and the receivers' ports, and
    // was never asked for a name nor sent a request in absolute form (the
    // plain-http delivery went through a tunnel too).
    let expected: Vec<String> = [&secure, &plain]
        .iter()
        .map(|r| format!("127.0.0.1:{}", port_of(r)))
        .collect();
    let connects = wait_until(
        Duration::from_secs(5),
        &format!("CONNECT {expected:?} in tinyproxy's log"),
        || async {
            let connects = proxy.connects();
            expected
                .iter()
                .all(|e| connects.contains(e))
                .then_some(connects)
        },
    )
    .await;
    assert!(
        connects.iter().all(|c| !c.contains("localhost")),
        "{connects:?}"
    );
    let requests = proxy.requests();
    assert!(
        requests.iter().all(|r| r.starts_with("CONNECT ")),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_target_is_refused_before_anything_reaches_the_proxy() {
    let proxy = TinyProxy::start().await;
    let proxy_url = proxy.url();
    let env = TestEnv::with(&[
        ("HERALD__DELIVERY__PROXY_URL", proxy_url.as_str()),
        ("HERALD__SECURITY__ALLOW_PRIVATE_TARGETS", "false"),
    ])
    .await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    // A name (the api does not resolve names at the door) that resolves
    // only to loopback, where a receiver really listens.
    let name = loopback_name().await;
    api.create_webhook(
        &token,
        json!({"name": "sneaky", "url": format!("http://{name}:{}/x", port_of(&receiver))}),
    )
    .await;
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;

    // Blocked at once, with the guard's reason, and not retried.
    let (error, count, next): (Option<String>, i32, Option<chrono::DateTime<chrono::Utc>>) =
        wait_until(WAIT, "the delivery failed", || async {
            let row = env
                .db()
                .await
                .query_opt(
                    "SELECT a.error, d.attempt_count, d.next_attempt_at FROM deliveries d
                     JOIN delivery_attempts a ON a.delivery_id = d.id WHERE d.status = 'failed'",
                    &[],
                )
                .await
                .expect("query")?;
            Some((row.get(0), row.get(1), row.get(2)))
        })
        .await;
    let error = error.expect("the attempt's error");
    assert!(
        error.starts_with(&format!("blocked: {name} resolves only to")),
        "{error}"
    );
    assert_eq!(count, 1);
    assert!(next.is_none());
    assert!(receiver.requests().is_empty());
    // The proxy was never asked for anything: no CONNECT, no request.
    assert_eq!(proxy.requests(), Vec::<String>::new(), "{}", proxy.log());

    // The log is live: a request sent to the proxy directly shows up in it,
    // so the emptiness above means something.
    let direct = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).expect("a proxy URL"))
        .build()
        .expect("a client");
    let _ = direct.post(receiver.url("direct")).send().await;
    wait_until(WAIT, "tinyproxy to log the direct request", || async {
        (!proxy.requests().is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_presents_its_client_certificate_to_an_endpoint_that_requires_one() {
    let env = TestEnv::with(&[("HERALD__SECURITY__ALLOW_INSECURE_TLS", "true")]).await;
    let (api, _d, _w) = env.start_all().await;
    let (receiver, client) = Receiver::start_mtls().await;
    let stranger = herald_testkit::TestCa::new("another CA").issue("stranger");
    let (_, token) = api.create_tenant("acme").await;
    let mut ids = Vec::new();
    for (name, cert) in [
        ("with", Some(&client)),
        ("without", None),
        ("untrusted", Some(&stranger)),
    ] {
        let mut body = json!({"name": name, "url": receiver.url(name), "verify_ssl": false,
                              "retry_attempts": 0});
        if let Some(c) = cert {
            body["client_certificate"] =
                json!({"certificate": c.certificate, "private_key": c.private_key});
        }
        let w = api.create_webhook(&token, body).await;
        if cert.is_some() {
            let fingerprint = w["client_certificate"]["fingerprint_sha256"]
                .as_str()
                .expect("the fingerprint is shown");
            assert_eq!(fingerprint.len(), 64);
        } else {
            assert_eq!(w["client_certificate"], serde_json::Value::Null);
        }
        let text = w.to_string();
        assert!(!text.contains("PRIVATE KEY") && !text.contains("BEGIN CERTIFICATE"));
        ids.push(w["id"].as_str().unwrap().to_owned());
    }
    // Sealed at rest: the key's PEM is nowhere in the row.
    let rows = env
        .db()
        .await
        .query(
            "SELECT client_cert_sealed FROM webhooks WHERE client_cert_sealed IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        let sealed: Vec<u8> = r.get(0);
        assert!(!sealed.windows(11).any(|w| w == b"PRIVATE KEY"));
    }

    api.send_event(&token, json!({"event_type": "a.b", "data": {"n": 1}}))
        .await;
    let statuses = wait_until(Duration::from_secs(30), "three outcomes", || async {
        let rows = env
            .db()
            .await
            .query(
                "SELECT w.name, d.status, a.error FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                 JOIN delivery_attempts a ON a.delivery_id = d.id WHERE d.status IN ('success', 'failed') \
                 ORDER BY w.name",
                &[],
            )
            .await
            .unwrap();
        (rows.len() == 3).then(|| {
            rows.iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, Option<String>>(2)))
                .collect::<Vec<_>>()
        })
    })
    .await;
    assert_eq!(statuses[1].0, "with");
    assert_eq!(statuses[1].1, "success", "{statuses:?}");
    for (name, status, error) in [&statuses[0], &statuses[2]] {
        assert_eq!(status, "failed", "{name}: {statuses:?}");
        assert!(
            error.as_deref().is_some_and(|e| e.contains("connection")),
            "{name}: {error:?}"
        );
    }
    let got = receiver.requests();
    assert_eq!(
        got.len(),
        1,
        "only the one with the right certificate got through"
    );
    assert_eq!(got[0].path, "/with");

    // Removing the certificate: the endpoint refuses again.
    let (status, w) = api
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/webhooks/{}", ids[0]),
            Some(&token),
            Some(&json!({"client_certificate": null})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(w["client_certificate"], serde_json::Value::Null);

    // What cannot work is refused at the door, naming the field.
    for (cert, field) in [
        (
            json!({"certificate": "junk", "private_key": client.private_key}),
            "client_certificate.certificate",
        ),
        (
            json!({"certificate": client.certificate, "private_key": "junk"}),
            "client_certificate.private_key",
        ),
        (
            json!({"certificate": client.certificate, "private_key": stranger.private_key}),
            "client_certificate",
        ),
        (
            json!({"certificate": client.certificate}),
            "client_certificate",
        ),
    ] {
        let (status, problem) = api
            .call(
                reqwest::Method::POST,
                "/v1/webhooks",
                Some(&token),
                Some(&json!({"url": receiver.url("x"), "verify_ssl": false, "client_certificate": cert})),
            )
            .await;
        assert!(status == 422 || status == 400, "{status} {problem}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            fields.iter().any(|f| f.starts_with(field)) || problem.to_string().contains(field),
            "{field} in {problem}"
        );
    }
}
