//! Payload filters: a webhook with a JSONPath filter expression gets only
//! the events whose data it holds for; a bad or costly expression is
//! refused when the webhook is saved.

use std::time::Duration;

use herald_testkit::{Receiver, TestEnv, wait_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_passes_and_blocks_the_right_events() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let (api, dispatcher, _worker) = env.start_all().await;
    let (tenant, token) = api.create_tenant("acme").await;
    let create = |body: Value| {
        let (api, token) = (&api, &token);
        async move {
            api.call(Method::POST, "/v1/webhooks", Some(token), Some(&body))
                .await
        }
    };

    // Refused when saved, naming the field.
    for bad in [
        "@..amount > 1",
        "$.amount > 1",
        "match(@.name, '(a+)+$')",
        "@.amount >",
        "",
    ] {
        let (status, problem) = create(json!({"url": receiver.url("/x"), "filter": bad})).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad:?}: {problem}"
        );
        assert_eq!(problem["errors"][0]["field"], "filter", "{bad:?}");
    }
    let (status, _) = create(json!({"url": receiver.url("/x"),
        "filter": format!("@.a == '{}'", "x".repeat(2000))}))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, big) = create(json!({"name": "big", "url": receiver.url("/big"),
        "event_types": ["invoice.*"], "filter": "@.amount > 1000 && @.currency == 'EUR'"}))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{big}");
    assert_eq!(big["filter"], "@.amount > 1000 && @.currency == 'EUR'");
    let (status, _) = create(json!({"name": "all", "url": receiver.url("/all"),
        "event_types": ["invoice.*"]}))
    .await;
    assert_eq!(status, StatusCode::CREATED);
    env.wait_config_seen(&[&dispatcher]).await;

    let events = [
        ("i-1", json!({"amount": 5000, "currency": "EUR"})),
        ("i-2", json!({"amount": 5000, "currency": "USD"})),
        ("i-3", json!({"amount": 10, "currency": "EUR"})),
        ("i-4", json!({"currency": "EUR"})),
        ("i-5", json!(["not", "an", "object"])),
    ];
    for (id, data) in &events {
        api.send_event(
            &token,
            json!({"event_type": "invoice.created", "id": id, "data": data}),
        )
        .await;
    }
    // Over AMQP, the same filter applies.
    let (_conn, ch) = env.amqp().await;
    let amqp = json!({"tenant_id": tenant, "id": "i-6", "event_type": "invoice.created",
        "data": {"amount": 1001, "currency": "EUR"}});
    env.publish_event(&ch, "invoice.created", amqp.to_string().as_bytes())
        .await;

    let ids = |path: &str| {
        let mut ids: Vec<String> = receiver
            .requests_to(path)
            .iter()
            .map(|r| r.json()["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        ids.sort();
        ids
    };
    wait_until(
        WAIT,
        "every event reaches the unfiltered webhook",
        || async { (ids("/all").len() >= 6).then_some(()) },
    )
    .await;
    // Both webhooks' deliveries of an event are published together, so
    // the filtered one has had its chance by now; the database says what
    // was made for it.
    let made = env
        .count(&format!(
            "SELECT count(*) FROM deliveries WHERE webhook_id = '{}'",
            big["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(made, 2, "deliveries made for the filtered webhook");
    wait_until(WAIT, "the filtered webhook's two events", || async {
        (ids("/big").len() >= 2).then_some(())
    })
    .await;
    assert_eq!(ids("/big"), ["i-1", "i-6"]);
    assert_eq!(ids("/all"), ["i-1", "i-2", "i-3", "i-4", "i-5", "i-6"]);

    // Removing the filter lets everything through again.
    let path = format!("/v1/webhooks/{}", big["id"].as_str().unwrap());
    let (status, patched) = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"filter": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["filter"], Value::Null);
    env.wait_config_seen(&[&dispatcher]).await;
    api.send_event(
        &token,
        json!({"event_type": "invoice.created", "id": "i-7", "data": {"amount": 1}}),
    )
    .await;
    wait_until(WAIT, "the unfiltered event", || async {
        ids("/big").contains(&"i-7".to_owned()).then_some(())
    })
    .await;
}
