//! The seeds' own examples against Herald: each request as its documentation
//! shows it, and each receiver's verification code translated line by line,
//! so a team moving to Herald keeps its receivers unchanged.

use std::time::Duration;

use herald_testkit::{Receiver, TestEnv, wait_until};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(20);

/// `hmac.new(key, msg, hashlib.sha256).hexdigest()`.
fn hexdigest(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

/// SecureBase's `verify_webhook_signature(payload_body, signature_header,
/// secret)`, with `payload_body = request.get_data(as_text=True)`.
fn securebase_verify(body: &[u8], signature_header: &str, secret: &str) -> bool {
    let payload_body = std::str::from_utf8(body).expect("as_text");
    let expected_signature = hexdigest(secret.as_bytes(), payload_body.as_bytes());
    expected_signature == signature_header
}

/// VaulTLS's `verify_webhook_signature(payload, signature, secret)`.
fn vaultls_verify(payload: &[u8], signature: &str, secret: &str) -> bool {
    let payload = std::str::from_utf8(payload).expect("the payload is text");
    let expected_signature = hexdigest(secret.as_bytes(), payload.as_bytes());
    format!("sha256={expected_signature}") == signature
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_receivers_verify_herald_signatures_with_their_own_code() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;

    // SecureBase: a generated `whsec_` secret, keyed as the whole string,
    // bare hex in its own header.
    let securebase = api
        .create_webhook(
            &token,
            json!({"url": receiver.url("securebase"), "description": "Production webhook for invoices",
                   "events": ["invoice.created", "invoice.paid"],
                   "signing": {"hex": true, "hex_header": "X-SecureBase-Signature"}}),
        )
        .await;
    let securebase_secret = securebase["secret"].as_str().unwrap().to_owned();
    assert!(securebase_secret.starts_with("whsec_"));
    assert_eq!(securebase["signing"]["hex"], true);

    // VaulTLS: its create request as documented (a secret of its own, its
    // header names), the signature in `X-VaulTLS-Signature`.
    let vaultls = api
        .create_webhook(
            &token,
            json!({
                "name": "Certificate Monitoring Webhook",
                "url": receiver.url("vaultls"),
                "events": ["CertificateCreated", "CertificateExpiring", "CertificateRevoked"],
                "secret": "webhook-hmac-secret-key",
                "headers": {"X-Service": "VaulTLS", "Authorization": "Bearer monitoring-token"},
                "timeout_seconds": 30,
                "retry_attempts": 3,
                "signing": {"simple_header": "X-VaulTLS-Signature"}
            }),
        )
        .await;
    assert_eq!(vaultls["secret"], "webhook-hmac-secret-key");
    // Stored sealed like a generated one.
    let sealed: Vec<u8> = env
        .db()
        .await
        .query_one(
            "SELECT secret_sealed FROM webhooks WHERE name = 'Certificate Monitoring Webhook'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !sealed
            .windows(b"webhook-hmac-secret-key".len())
            .any(|w| w == b"webhook-hmac-secret-key")
    );

    api.send_event(
        &token,
        json!({"event_type": "invoice.created", "data": {"invoice_id": "inv_12345", "amount": 250.00, "note": "café ✓"}}),
    )
    .await;
    api.send_event(
        &token,
        json!({"event_type": "CertificateCreated", "data": {"certificate_id": 123, "certificate_name": "api.example.com"}}),
    )
    .await;
    wait_until(WAIT, "both deliveries", || async {
        (receiver.requests().len() == 2).then_some(())
    })
    .await;

    let sb = &receiver.requests_to("securebase")[0];
    let signature = sb.header("x-securebase-signature").expect("the header");
    assert!(
        signature.len() == 64
            && signature
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "bare lowercase hex: {signature}"
    );
    assert!(securebase_verify(&sb.body, signature, &securebase_secret));
    assert!(!securebase_verify(&sb.body, signature, "whsec_another"));
    // The other schemes still sign beside it.
    assert!(sb.signatures_valid(&securebase_secret));

    let vt = &receiver.requests_to("vaultls")[0];
    assert_eq!(vt.header("x-service"), Some("VaulTLS"));
    assert_eq!(vt.header("authorization"), Some("Bearer monitoring-token"));
    let signature = vt.header("x-vaultls-signature").expect("the header");
    assert!(vaultls_verify(
        &vt.body,
        signature,
        "webhook-hmac-secret-key"
    ));
    assert!(!vaultls_verify(
        &vt.body,
        signature,
        "webhook-hmac-secret-keY"
    ));
    assert!(
        vt.header("x-webhook-signature").is_none(),
        "the simple scheme moved to its own header"
    );
    // Standard Webhooks keyed with the secret's bytes as given.
    let id = vt.header("webhook-id").unwrap();
    let ts = vt.header("webhook-timestamp").unwrap();
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(&vt.body);
    let mut mac = Hmac::<Sha256>::new_from_slice(b"webhook-hmac-secret-key").unwrap();
    mac.update(&signed);
    use base64::Engine;
    let v1 = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(vt.header("webhook-signature"), Some(v1.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_hex_headers_that_cannot_work_are_refused_naming_the_field() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let (_, token) = api.create_tenant("acme").await;
    for (body, field) in [
        (
            json!({"url": "http://127.0.0.1:9/a", "secret": "short-secret"}),
            "secret",
        ),
        (
            json!({"url": "http://127.0.0.1:9/a", "secret": "has a space in it!"}),
            "secret",
        ),
        (
            json!({"url": "http://127.0.0.1:9/a", "secret": "x".repeat(300)}),
            "secret",
        ),
        (
            json!({"url": "http://127.0.0.1:9/a", "secret": "whsec_%%%%not-base64%%%%"}),
            "secret",
        ),
        (
            json!({"url": "http://127.0.0.1:9/a", "signing": {"hex": true, "hex_header": "bad header"}}),
            "signing.hex_header",
        ),
        (
            json!({"url": "http://127.0.0.1:9/a", "signing": {"hex": true, "hex_header": "webhook-signature"}}),
            "signing.hex_header",
        ),
        (
            json!({"url": "http://127.0.0.1:9/a", "signing": {"hex": true, "hex_header": "X-Webhook-Signature"}}),
            "signing.hex_header",
        ),
        (
            json!({"url": "http://127.0.0.1:9/a", "signing": {"hex": true}, "headers": {"X-Signature": "mine"}}),
            "headers",
        ),
    ] {
        let (status, problem) = api
            .call(
                reqwest::Method::POST,
                "/v1/webhooks",
                Some(&token),
                Some(&body),
            )
            .await;
        assert_eq!(status, 422, "{body}: {problem}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{body}: {field} in {fields:?}"
        );
    }
    assert_eq!(env.count("SELECT count(*) FROM webhooks").await, 0);
}

/// Vaulytica's `verify_signature(payload: dict, signature, secret)`, run by
/// CPython as its documentation writes it, on the body as received.
const VAULYTICA_VERIFY: &str = r#"
import hmac
import hashlib
import json
import sys

def verify_signature(payload: dict, signature: str, secret: str) -> bool:
    payload_str = json.dumps(payload, sort_keys=True)
    expected_signature = hmac.new(
        secret.encode(),
        payload_str.encode(),
        hashlib.sha256,
    ).hexdigest()
    return hmac.compare_digest(signature, expected_signature)

body = open(sys.argv[1], "rb").read()
payload = json.loads(body)
print(verify_signature(payload, sys.argv[2], sys.argv[3]))
print(json.dumps(payload, sort_keys=True).encode() == body)
"#;

fn python_verify(body: &[u8], signature: &str, secret: &str) -> String {
    let dir = std::env::temp_dir().join(format!("herald-vaulytica-{}", uuid::Uuid::new_v4()));
    std::fs::write(&dir, body).expect("write the body");
    let out = std::process::Command::new("python3")
        .args(["-c", VAULYTICA_VERIFY])
        .arg(&dir)
        .args([signature, secret])
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_file(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python prints text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_envelopes_are_formats_picked_with_one_word() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let mut ids = std::collections::HashMap::new();
    for format in ["vaultls", "securebase", "webnet"] {
        let w = api
            .create_webhook(
                &token,
                json!({"name": format, "url": receiver.url(format), "format": format}),
            )
            .await;
        assert_eq!(w["format"], format);
        ids.insert(format, w["id"].as_str().unwrap().to_owned());
    }
    api.create_webhook(
        &token,
        json!({"name": "vaulytica", "url": receiver.url("vaulytica"), "format": "vaulytica",
               "secret": "vaulytica-hmac-secret", "signing": {"hex": true}}),
    )
    .await;
    // The template variables of every envelope field.
    api.create_webhook(
        &token,
        json!({"name": "custom", "url": receiver.url("custom"), "format": "custom",
               "template": concat!(
                   r#"{"event": "{{ event.event }}", "timestamp": {{ event.timestamp_unix }}, "#,
                   r#""event_timestamp": "{{ event.event_timestamp }}", "#,
                   r#""event_type": "{{ event.event_type }}", "source": "{{ event.source }}", "#,
                   r#""severity": "{{ event.severity }}", "ms": {{ event.timestamp_ms }}, "#,
                   r#""id": "{{ event.id }}"}"#)}),
    )
    .await;

    let occurred_at = "2025-12-02T01:00:00.250Z";
    let data = json!({"actor": {"id": 1, "username": "admin"},
                      "job": {"id": 123, "status": "success"},
                      "amount": 250.0, "note": "café ✓", "event_type": "not the envelope's"});
    let event_id = api
        .send_event(
            &token,
            json!({"event_type": "job.completed", "occurred_at": occurred_at, "source": "vaulytica",
                   "severity": "warning", "data": data}),
        )
        .await;
    wait_until(WAIT, "five deliveries", || async {
        (receiver.requests().len() == 5).then_some(())
    })
    .await;
    let body = |path: &str| receiver.requests_to(path)[0].json();
    let unix = 1_764_637_200;

    assert_eq!(
        body("vaultls"),
        json!({"event": "job.completed", "timestamp": unix, "tenant_id": body("vaultls")["tenant_id"],
               "webhook_id": ids["vaultls"], "data": data})
    );
    assert!(
        body("vaultls")["tenant_id"]
            .as_str()
            .is_some_and(|t| t.len() == 36)
    );
    assert_eq!(
        body("securebase"),
        json!({"event": "job.completed", "timestamp": "2025-12-02T01:00:00Z", "data": data})
    );
    assert_eq!(
        body("webnet"),
        json!({"event_timestamp": "2025-12-02T01:00:00Z", "event_type": "job.completed",
               "actor": {"id": 1, "username": "admin"}, "job": {"id": 123, "status": "success"},
               "amount": 250.0, "note": "café ✓"})
    );
    assert_eq!(
        body("custom"),
        json!({"event": "job.completed", "timestamp": unix, "event_timestamp": "2025-12-02T01:00:00Z",
               "event_type": "job.completed", "source": "vaulytica", "severity": "warning",
               "ms": 1_764_637_200_250_i64, "id": event_id})
    );

    let vaulytica = &receiver.requests_to("vaulytica")[0];
    assert_eq!(
        vaulytica.json(),
        json!({"timestamp": "2025-12-02T01:00:00Z", "source": "vaulytica", "event_type": "job.completed",
               "severity": "warning", "data": data})
    );
    let signature = vaulytica
        .header("x-signature")
        .expect("the hex scheme's default header");
    assert_eq!(
        python_verify(&vaulytica.body, signature, "vaulytica-hmac-secret"),
        "True\nTrue\n",
        "Vaulytica's own check passes, and the body is json.dumps(sort_keys=True) byte for byte"
    );
    assert_eq!(
        python_verify(&vaulytica.body, signature, "another-hmac-secret"),
        "False\nTrue\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_replaces_a_webhook_whole_keeping_its_name_and_secret() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let (_, token) = api.create_tenant("acme").await;
    let created = api
        .create_webhook(
            &token,
            json!({"name": "billing", "url": "http://127.0.0.1:9/a", "description": "old",
                   "events": ["invoice.*"], "headers": {"X-Env": "prod"}, "rate_limit": 5,
                   "retry_schedule": ["1m"], "timeout_seconds": 30, "enabled": false,
                   "signing": {"hex": true, "ed25519": true},
                   "auth": {"type": "bearer", "token": "t0k3n"}}),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/webhooks/{id}");
    let sealed = || async {
        env.db()
            .await
            .query_one("SELECT secret_sealed FROM webhooks", &[])
            .await
            .unwrap()
            .get::<_, Vec<u8>>(0)
    };
    let secret_before = sealed().await;

    let (status, replaced) = api
        .call(
            reqwest::Method::PUT,
            &path,
            Some(&token),
            Some(&json!({"url": "http://127.0.0.1:9/b", "event_types": ["order.created"]})),
        )
        .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["name"], "billing", "the name stays");
    assert_eq!(replaced["url"], "http://127.0.0.1:9/b");
    assert_eq!(replaced["event_types"], json!(["order.created"]));
    assert_eq!(replaced["description"], "");
    assert_eq!(replaced["headers"], json!({}));
    assert_eq!(replaced["rate_limit"], serde_json::Value::Null);
    assert_eq!(replaced["timeout_seconds"], 10);
    assert_eq!(replaced["is_active"], true);
    assert_eq!(replaced["retry_attempts"], 7);
    assert_eq!(
        replaced["retry_schedule"],
        json!(["5s", "5m", "30m", "2h", "5h", "10h", "10h"])
    );
    assert_eq!(replaced["auth"], serde_json::Value::Null);
    assert_eq!(
        (
            &replaced["signing"]["standard"],
            &replaced["signing"]["simple"],
            &replaced["signing"]["hex"],
            &replaced["signing"]["ed25519"]
        ),
        (&json!(true), &json!(true), &json!(false), &json!(false))
    );
    assert!(replaced.get("secret").is_none());
    assert_eq!(sealed().await, secret_before, "the secret stays");

    // The same body twice gives the same webhook; PATCH-like partial
    // bodies do not leave old values behind.
    let (status, again) = api
        .call(
            reqwest::Method::PUT,
            &path,
            Some(&token),
            Some(
                &json!({"url": "http://127.0.0.1:9/b", "event_types": ["order.created"],
                         "retry_backoff_seconds": 2, "jitter": true}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (
            &again["retry_backoff_seconds"],
            &again["exponential_base"],
            &again["jitter"],
            &again["retry_attempts"]
        ),
        (&json!(2), &json!(2.0), &json!(true), &json!(5))
    );

    for (body, field) in [
        (json!({"event_types": ["a"]}), "url"),
        (json!({"url": "http://127.0.0.1:9/b", "nope": 1}), ""),
        (json!({"url": "ftp://x/"}), "url"),
    ] {
        let (status, problem) = api
            .call(reqwest::Method::PUT, &path, Some(&token), Some(&body))
            .await;
        assert!(status == 422 || status == 400, "{body}: {status} {problem}");
        if !field.is_empty() {
            assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        }
    }
    let (status, _) = api
        .call(
            reqwest::Method::PUT,
            &format!("/v1/webhooks/{}", uuid::Uuid::new_v4()),
            Some(&token),
            Some(&json!({"url": "http://127.0.0.1:9/b"})),
        )
        .await;
    assert_eq!(status, 404);
}
