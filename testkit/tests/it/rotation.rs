//! Secret rotation: the new secret is answered once, and the previous one
//! keeps signing beside it until the overlap ends.

use std::time::Duration;

use herald_delivery::signing::{WebhookSecret, verify_v1a};
use herald_testkit::{Received, Receiver, TestEnv, wait_until};
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// The request that carried event `id`, once it has arrived.
async fn request_for(receiver: &Receiver, id: &str, what: &str) -> Received {
    wait_until(WAIT, what, || async {
        receiver
            .requests()
            .into_iter()
            .find(|r| r.header("webhook-id") == Some(id))
    })
    .await
}

fn v1_valid(r: &Received, secret: &str) -> bool {
    let secret = WebhookSecret::parse(secret).expect("a secret");
    let (Some(id), Some(ts), Some(header)) = (
        r.header("webhook-id"),
        r.header("webhook-timestamp").and_then(|t| t.parse().ok()),
        r.header("webhook-signature"),
    ) else {
        return false;
    };
    secret.verify_v1(id, ts, &r.body, header)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_new_one_until_the_overlap_ends() {
    let env = TestEnv::with(&[("HERALD__API__SECRET_ROTATION_OVERLAP_SECONDS", "3")]).await;
    let (api, _d, worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let (_, other) = api.create_tenant("other").await;
    let hook = api
        .create_webhook(&token, json!({"name": "h", "url": receiver.url("h")}))
        .await;
    let old = hook["secret"].as_str().unwrap().to_owned();
    let path = format!(
        "/v1/webhooks/{}/rotate-secret",
        hook["id"].as_str().unwrap()
    );

    let (status, rotated) = api.call(Method::POST, &path, Some(&token), None).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated["previous_secret_expires_at"].is_string());
    // The secret is not shown again.
    let (_, read) = api
        .call(
            Method::GET,
            &format!("/v1/webhooks/{}", hook["id"].as_str().unwrap()),
            Some(&token),
            None,
        )
        .await;
    assert!(read.get("secret").is_none());

    // Within the overlap: both secrets verify `webhook-signature`, and the
    // simple scheme uses the new one, once the worker has the change.
    env.wait_config_seen(&[&worker]).await;
    let during = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    let got = request_for(&receiver, &during, "the delivery during the overlap").await;
    assert!(v1_valid(&got, &old), "the old secret still verifies");
    assert!(v1_valid(&got, &new), "the new secret verifies");
    assert!(
        got.signatures_valid(&new),
        "both schemes with the new secret"
    );

    // After it: only the new secret.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    let got = request_for(&receiver, &after, "the delivery after the overlap").await;
    assert!(!v1_valid(&got, &old), "the old secret no longer verifies");
    assert!(got.signatures_valid(&new));
    assert_eq!(
        got.header("webhook-signature").unwrap().split(' ').count(),
        1
    );

    // A given secret is kept; bad ones and other tenants are refused.
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (status, body) = api
        .call(
            Method::POST,
            &path,
            Some(&token),
            Some(&json!({"secret": given})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["secret"].as_str()),
        (200, Some(given))
    );
    let (status, _) = api
        .call(
            Method::POST,
            &path,
            Some(&token),
            Some(&json!({"secret": "plain"})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        api.call(Method::POST, &path, Some(&other), None).await.0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_delivery_goes_out_signed_now_and_is_recorded() {
    let env = TestEnv::new().await;
    // The api alone: the test call does not go through the queues.
    let api = env.start_api().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let (_, other) = api.create_tenant("other").await;
    let hook = api
        .create_webhook(
            &token,
            json!({"name": "h", "url": receiver.url("h"), "event_types": ["order.*"]}),
        )
        .await;
    let secret = hook["secret"].as_str().unwrap();
    let path = format!("/v1/webhooks/{}/test", hook["id"].as_str().unwrap());

    let (status, result) = api.call(Method::POST, &path, Some(&token), None).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["success"], true);
    assert_eq!(result["status_code"], 200);
    assert!(result["duration_ms"].as_u64().is_some());
    let got = receiver.requests();
    assert_eq!(got.len(), 1, "sent at once, synchronously");
    assert!(got[0].signatures_valid(secret));
    assert_eq!(got[0].json()["type"], "webhook.test");
    assert_eq!(got[0].json()["data"]["webhook_id"], hook["id"]);

    // Recorded like any delivery.
    let delivery = result["delivery_id"].as_str().unwrap();
    let (_, recorded) = api
        .call(
            Method::GET,
            &format!("/v1/deliveries/{delivery}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(recorded["status"], "success");
    assert_eq!(recorded["attempts"][0]["status_code"], 200);

    // A failing endpoint is reported, not retried.
    receiver.respond_with(500);
    let (_, result) = api.call(Method::POST, &path, Some(&token), None).await;
    assert_eq!(result["success"], false);
    assert_eq!(result["status_code"], 500);
    assert_eq!(
        api.call(Method::POST, &path, Some(&other), None).await.0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_signs_beside_the_new_one_until_the_overlap_ends() {
    let env = TestEnv::with(&[("HERALD__API__SECRET_ROTATION_OVERLAP_SECONDS", "3")]).await;
    let (api, _d, worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let (_, other) = api.create_tenant("other").await;
    let plain = api
        .create_webhook(
            &token,
            json!({"name": "plain", "url": receiver.url("plain"),
            "event_types": ["none"]}),
        )
        .await;
    let hook = api
        .create_webhook(
            &token,
            json!({"name": "h", "url": receiver.url("h"), "signing": {"ed25519": true}}),
        )
        .await;
    let old = hook["signing"]["public_key"].as_str().unwrap().to_owned();
    let path = format!(
        "/v1/webhooks/{}/rotate-signing-key",
        hook["id"].as_str().unwrap()
    );
    let (status, rotated) = api.call(Method::POST, &path, Some(&token), None).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["public_key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["previous_public_key"], old.as_str());
    assert!(rotated["previous_public_key_expires_at"].is_string());
    let (_, read) = api
        .call(
            Method::GET,
            &format!("/v1/webhooks/{}", hook["id"].as_str().unwrap()),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(read["signing"]["public_key"], new.as_str());
    assert_eq!(read["signing"]["previous_public_key"], old.as_str());

    let v1a_count = |r: &Received| {
        r.header("webhook-signature")
            .unwrap()
            .split(' ')
            .filter(|s| s.starts_with("v1a,"))
            .count()
    };
    let verifies = |r: &Received, key: &str| {
        verify_v1a(
            key,
            r.header("webhook-id").unwrap(),
            r.header("webhook-timestamp").unwrap().parse().unwrap(),
            &r.body,
            r.header("webhook-signature").unwrap(),
        )
    };
    // Within the overlap both keys verify, once the worker has the change.
    env.wait_config_seen(&[&worker]).await;
    let during = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    let got = request_for(&receiver, &during, "the delivery during the overlap").await;
    assert!(verifies(&got, &new) && verifies(&got, &old));
    assert_eq!(v1a_count(&got), 2);

    // After it: only the new key.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    let got = request_for(&receiver, &after, "the delivery after the overlap").await;
    assert!(verifies(&got, &new));
    assert!(!verifies(&got, &old));
    assert_eq!(v1a_count(&got), 1);

    // Only with ed25519 on, and only the tenant's own.
    let (status, problem) = api
        .call(
            Method::POST,
            &format!(
                "/v1/webhooks/{}/rotate-signing-key",
                plain["id"].as_str().unwrap()
            ),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        api.call(Method::POST, &path, Some(&other), None).await.0,
        404
    );
}
