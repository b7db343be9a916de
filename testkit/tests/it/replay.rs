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

/// Polls a replay until it is no longer running; answers it.
async fn finished(api: &herald_testkit::ApiHandle, token: &str, id: &str) -> Value {
    wait_until(WAIT, "the replay to finish", || async {
        let (_, r) = api
            .call(Method::GET, &format!("/v1/replays/{id}"), Some(token), None)
            .await;
        (r["state"] != "running").then_some(r)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_delivers_exactly_the_missing_events_once() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let (api, dispatcher, _worker) = env.start_all().await;
    let (_, token) = api.create_tenant("acme").await;
    let (_, other) = api.create_tenant("other").await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let a = api
        .create_webhook(
            &token,
            json!({"name": "a", "url": receiver.url("a"), "event_types": ["invoice.*"],
                   "retry_attempts": 0}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    receiver.respond_with(500);
    for i in 1..=3 {
        api.send_event(
            &token,
            json!({"event_type": "invoice.paid", "id": format!("e-{i}"), "data": {"n": i}}),
        )
        .await;
    }
    wait_until(WAIT, "three failed deliveries", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'failed'")
            .await
            == 3)
            .then_some(())
    })
    .await;
    receiver.respond_with(200);
    for id in ["e-4", "e-5"] {
        api.send_event(
            &token,
            json!({"event_type": "invoice.paid", "id": id, "data": {}}),
        )
        .await;
    }
    api.send_event(
        &token,
        json!({"event_type": "order.created", "id": "o-1", "data": {}}),
    )
    .await;
    wait_until(WAIT, "the two successes", || async {
        (receiver.requests_to("/a").len() == 5).then_some(())
    })
    .await;
    env.wait_event_stored("o-1").await;
    let b = api
        .create_webhook(
            &token,
            json!({"name": "b", "url": receiver.url("b"), "event_types": ["invoice.*"]}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.wait_config_seen(&[&dispatcher]).await;
    let replay = |hook: &str, body: Value, who: &str| {
        let (api, path, who) = (&api, format!("/v1/webhooks/{hook}/replay"), who.to_owned());
        async move { api.call(Method::POST, &path, Some(&who), Some(&body)).await }
    };

    let (status, dry) = replay(&a, json!({"since": since, "dry_run": true}), &token).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["total"], 6);
    assert_eq!(dry["count"], 3, "the three failed ones");
    assert_eq!(dry["complete"], true);

    let (status, started) = replay(&a, json!({"since": since}), &token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["state"], "running");
    assert_eq!(started["total"], 6);
    let done = finished(&api, &token, started["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "done");
    assert_eq!(done["processed"], 6);
    assert_eq!(done["queued"], 3);
    wait_until(WAIT, "the replayed events", || async {
        (receiver.requests_to("/a").len() == 8).then_some(())
    })
    .await;
    let mut again: Vec<String> = receiver.requests_to("/a")[5..]
        .iter()
        .map(|r| r.header("webhook-id").unwrap_or_default().to_owned())
        .collect();
    again.sort();
    assert_eq!(again, ["e-1", "e-2", "e-3"]);

    // Once: a second replay finds nothing missing.
    let (_, second) = replay(&a, json!({"since": since}), &token).await;
    let second = finished(&api, &token, second["id"].as_str().unwrap()).await;
    assert_eq!(second["queued"], 0, "{second}");
    // A webhook created after the events gets every one it matches.
    let (_, to_b) = replay(
        &b,
        json!({"since": since, "event_types": ["invoice.paid"]}),
        &token,
    )
    .await;
    let to_b = finished(&api, &token, to_b["id"].as_str().unwrap()).await;
    assert_eq!(to_b["queued"], 5, "{to_b}");
    wait_until(WAIT, "b's five events", || async {
        (receiver.requests_to("/b").len() == 5).then_some(())
    })
    .await;
    assert_eq!(receiver.requests_to("/a").len(), 8, "nothing more to a");

    // Another tenant sees none of it; bad windows are refused.
    let path = format!("/v1/replays/{}", started["id"].as_str().unwrap());
    assert_eq!(
        api.call(Method::GET, &path, Some(&other), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        replay(&a, json!({"since": since}), &other).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, problem) = replay(&a, json!({"since": since, "until": since}), &token).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "until");
    let (status, problem) = replay(
        &a,
        json!({"since": since, "event_types": ["not a pattern!"]}),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "event_types[0]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_can_be_cancelled_midway() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let (api, dispatcher, _worker) = env.start_all().await;
    let (_, token) = api.create_tenant("acme").await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    api.create_webhook(
        &token,
        json!({"name": "log", "url": receiver.url("log"), "event_types": ["audit.*"]}),
    )
    .await;
    for round in 0..2 {
        let events: Vec<Value> = (0..1000)
            .map(|i| json!({"event_type": "invoice.paid", "id": format!("e-{round}-{i}"), "data": {}}))
            .collect();
        let (status, body) = api
            .call(
                Method::POST,
                "/v1/events/batch",
                Some(&token),
                Some(&json!({"events": events})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    wait_until(WAIT, "the 2,000 events stored", || async {
        (env.count("SELECT count(*) FROM events").await == 2000).then_some(())
    })
    .await;
    let hook = api
        .create_webhook(
            &token,
            json!({"name": "late", "url": receiver.url("late"), "event_types": ["invoice.*"]}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.wait_config_seen(&[&dispatcher]).await;
    let (status, started) = api
        .call(
            Method::POST,
            &format!("/v1/webhooks/{hook}/replay"),
            Some(&token),
            Some(&json!({"since": since})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let path = format!("/v1/replays/{}", started["id"].as_str().unwrap());
    let (status, cancelled) = api
        .call(Method::POST, &format!("{path}/cancel"), Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["total"], 2000);
    let queued = cancelled["queued"].as_u64().unwrap();
    assert!(
        queued <= 500,
        "at most one batch ran before the cancel: {cancelled}"
    );
    wait_until(WAIT, "what was queued before the cancel", || async {
        (receiver.requests_to("/late").len() as u64 == queued).then_some(())
    })
    .await;
    // Three rounds of the replayer later, nothing more has moved.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, after) = api.call(Method::GET, &path, Some(&token), None).await;
    assert_eq!(after["processed"], cancelled["processed"]);
    assert_eq!(after["state"], "cancelled");
    assert_eq!(receiver.requests_to("/late").len() as u64, queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_runs_a_few_replays_at_a_time() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let (_, token) = api.create_tenant("acme").await;
    let (_, other) = api.create_tenant("other").await;
    // No dispatcher runs here, so every replay stays running.
    let hook = |token: String| {
        let api = &api;
        async move {
            api.create_webhook(&token, json!({"url": "http://127.0.0.1:1/x"}))
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (mine, theirs) = (hook(token.clone()).await, hook(other.clone()).await);
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let start = |hook: &str, token: &str| {
        let (api, path, token) = (
            &api,
            format!("/v1/webhooks/{hook}/replay"),
            token.to_owned(),
        );
        async move {
            api.call(
                Method::POST,
                &path,
                Some(&token),
                Some(&json!({"since": since})),
            )
            .await
        }
    };
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (status, r) = start(&mine, &token).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{r}");
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    let (status, refused) = start(&mine, &token).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    // Another tenant is not held back by this one's replays.
    assert_eq!(start(&theirs, &other).await.0, StatusCode::ACCEPTED);
    // A cancelled one makes room.
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/v1/replays/{}/cancel", ids[0]),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(start(&mine, &token).await.0, StatusCode::ACCEPTED);
}
