//! Sending stored events again: a resend reaches the webhooks that match
//! the event now, webhooks created after it included, or the ones named.

use std::time::Duration;

use herald_testkit::{Receiver, TestEnv, wait_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_reaches_a_webhook_created_after_the_event() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let (api, dispatcher, _worker) = env.start_all().await;
    let (_, token) = api.create_tenant("acme").await;
    let (_, other) = api.create_tenant("other").await;
    let hook = |name: &str, types: Value, filter: Option<&str>| {
        let mut body = json!({"name": name, "url": receiver.url(name), "event_types": types});
        if let Some(f) = filter {
            body["filter"] = json!(f);
        }
        let (api, token) = (&api, &token);
        async move {
            api.create_webhook(token, body).await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let first = hook("first", json!(["invoice.*"]), None).await;
    api.send_event(
        &token,
        json!({"event_type": "invoice.paid", "id": "e-1", "data": {"amount": 50}}),
    )
    .await;
    wait_until(WAIT, "the first delivery", || async {
        (receiver.requests_to("/first").len() == 1).then_some(())
    })
    .await;

    // Webhooks made after the event: one that matches it, one of another
    // type, one whose filter the event's data fails.
    let later = hook("later", json!(["invoice.*"]), None).await;
    let orders = hook("orders", json!(["order.*"]), None).await;
    let _big = hook("big", json!(["invoice.*"]), Some("@.amount > 100")).await;
    let other_hook = api
        .create_webhook(
            &other,
            json!({"name": "theirs", "url": receiver.url("theirs")}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.wait_config_seen(&[&dispatcher]).await;

    let resend = |body: Option<Value>, who: &str| {
        let (api, who) = (&api, who.to_owned());
        async move {
            api.call(
                Method::POST,
                "/v1/events/e-1/resend",
                Some(&who),
                body.as_ref(),
            )
            .await
        }
    };
    let (status, resent) = resend(None, &token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{resent}");
    let mut to: Vec<&str> = resent["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["webhook_id"].as_str().unwrap())
        .collect();
    to.sort_unstable();
    let mut expected = vec![first.as_str(), later.as_str()];
    expected.sort_unstable();
    assert_eq!(to, expected, "the webhooks that match the event now");
    // Named: sent whether or not it subscribes.
    let (status, resent) = resend(Some(json!({"webhook_ids": [orders]})), &token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{resent}");

    wait_until(WAIT, "every resend delivered", || async {
        (receiver.requests_to("/first").len() == 2
            && receiver.requests_to("/later").len() == 1
            && receiver.requests_to("/orders").len() == 1)
            .then_some(())
    })
    .await;
    for path in ["/first", "/later", "/orders"] {
        for r in receiver.requests_to(path) {
            assert_eq!(r.header("webhook-id"), Some("e-1"), "{path}");
            assert_eq!(r.json()["data"], json!({"amount": 50}));
        }
    }
    assert!(
        receiver.requests_to("/big").is_empty(),
        "its filter holds back the event"
    );
    let (_, event) = api
        .call(Method::GET, "/v1/events/e-1", Some(&token), None)
        .await;
    assert_eq!(
        event["deliveries"].as_array().map(Vec::len),
        Some(4),
        "each resend is a delivery of its own: {event}"
    );

    // What a resend refuses.
    let (status, _) = api
        .call(Method::POST, "/v1/events/nope/resend", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = resend(None, &other).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's event");
    let (status, problem) = resend(Some(json!({"webhook_ids": [other_hook]})), &token).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "webhook_ids[0]");
    let (status, _) = resend(Some(json!({"webhook_ids": []})), &token).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, _) = api
        .call_raw(Method::POST, "/v1/events/e-1/resend", &token, "{oops")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(receiver.requests_to("/theirs").is_empty());
}
