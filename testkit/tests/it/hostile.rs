//! Hostile input and hostile endpoints, through the real processes: what
//! Herald cannot store is refused at the door (or parked with its reason
//! when it comes over AMQP), whatever an endpoint answers is stored safely
//! and never loops, one bad row never fails the rows stored with it, and a
//! healthy tenant's deliveries keep flowing meanwhile.

use std::time::{Duration, Instant};

use herald_testkit::{HostileEndpoint, Receiver, TestEnv, wait_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Posts raw bytes with a content type; answers the status, content type
/// and JSON body.
async fn post(
    api: &herald_testkit::ApiHandle,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, String, Value) {
    let mut req = api
        .http
        .post(format!("{}{path}", api.base))
        .bearer_auth(token)
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.expect("api reachable");
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.bytes().await.expect("body");
    (
        status,
        ct,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// Sends 20 events one by one, 100 ms apart, each once the one before
/// has arrived at `path`; answers how long each took, sent to received.
async fn one_by_one(
    api: &herald_testkit::ApiHandle,
    token: &str,
    receiver: &Receiver,
    path: &str,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let id = api
            .send_event(token, json!({"event_type": "a.b", "data": {"i": i}}))
            .await;
        wait_until(WAIT, "a healthy delivery", || async {
            receiver
                .requests_to(path)
                .iter()
                .any(|r| r.header("webhook-id") == Some(id.as_str()))
                .then_some(())
        })
        .await;
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    latencies
}

fn deep(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_postgres_cannot_store_is_refused_at_the_door_naming_the_field() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "all", "url": receiver.url("/all")}))
        .await;

    // (body, the field the 422 names)
    let cases: Vec<(String, &str)> = vec![
        (
            format!(r#"{{"event_type": "a.b", "data": {}}}"#, deep(100_000)),
            "data",
        ),
        (
            format!(r#"{{"event_type": "a.b", "data": {}}}"#, deep(65)),
            "data",
        ),
        (
            r#"{"event_type": "a.b", "data": {"k": "x\u0000y"}}"#.to_owned(),
            "data.k",
        ),
        (
            r#"{"event_type": "a.b", "data": {"k\u0000": 1}}"#.to_owned(),
            "data.k\u{FFFD}",
        ),
        (
            r#"{"event_type": "a.b", "data": ["\ud800"]}"#.to_owned(),
            "data[0]",
        ),
        (
            r#"{"event_type": "a.b", "data": {}, "source": "a\u0000b"}"#.to_owned(),
            "source",
        ),
        (
            r#"{"event_type": "a.b", "data": {}, "occurred_at": "-5000-01-01T00:00:00Z"}"#
                .to_owned(),
            "occurred_at",
        ),
        (
            r#"{"event_type": "a.b", "data": {"n": [1, 1e400]}}"#.to_owned(),
            "data.n[1]",
        ),
        (
            r#"{"event_type": "a.b", "data": {"n": 1e-20000}}"#.to_owned(),
            "data.n",
        ),
        (
            format!(
                r#"{{"event_type": "a.b", "data": {{"n": 1{}}}}}"#,
                "0".repeat(200)
            ),
            "data.n",
        ),
    ];
    for (body, field) in &cases {
        let (status, ct, problem) = post(
            &api,
            "/v1/events",
            &token,
            Some("application/json"),
            body.clone(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{problem} for {}",
            &body[..body.len().min(120)]
        );
        assert_eq!(ct, "application/problem+json");
        let named = problem["errors"][0]["field"].as_str().unwrap_or_default();
        assert!(named.starts_with(field), "{named} names {field}");
    }
    // In a batch, the event at fault is named and nothing is published.
    let batch = r#"{"events": [{"event_type": "a.b", "data": {}}, {"event_type": "a.b", "data": {"x": "\u0000"}}]}"#;
    let (status, _, problem) = post(
        &api,
        "/v1/events/batch",
        &token,
        Some("application/json"),
        batch,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "events[1].data.x");
    // Any other body too: a webhook name with a NUL.
    let (status, _, problem) = post(
        &api,
        "/v1/webhooks",
        &token,
        Some("application/json"),
        format!(r#"{{"name": "a\u0000", "url": "{}"}}"#, receiver.url("/x")),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "name");

    // Request shapes: trailing data, wrong or missing media types.
    let ok = r#"{"event_type": "a.b", "data": {}}"#;
    let (status, ct, _) = post(
        &api,
        "/v1/events",
        &token,
        Some("application/json"),
        format!("{ok} trailing"),
    )
    .await;
    assert_eq!(
        (status, ct.as_str()),
        (StatusCode::BAD_REQUEST, "application/problem+json")
    );
    let (status, _, _) = post(
        &api,
        "/v1/events",
        &token,
        Some("application/json"),
        format!("{ok}{ok}"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/xml"),
        None,
    ] {
        let (status, answer_ct, problem) = post(&api, "/v1/events", &token, ct, ok).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{ct:?}: {problem}"
        );
        assert_eq!(answer_ct, "application/problem+json");
    }
    let (status, _, _) = post(
        &api,
        "/v1/events",
        &token,
        Some("application/json; charset=utf-8"),
        ok,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, _) = post(
        &api,
        "/v1/events",
        &token,
        Some("application/vnd.acme+json"),
        ok,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Every error status is problem+json: 405, and 431 for too many or too
    // large headers.
    let resp = api
        .http
        .put(format!("{}/v1/events", api.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let mut many = api
        .http
        .get(format!("{}/v1/webhooks", api.base))
        .bearer_auth(&token);
    for i in 0..150 {
        many = many.header(format!("x-h{i}"), "v");
    }
    let resp = many.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let resp = api
        .http
        .get(format!("{}/v1/webhooks", api.base))
        .bearer_auth(&token)
        .header("x-big", "v".repeat(40 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");

    // Valid content that looks odd is stored and delivered as sent.
    let odd = r#"{"event_type": "a.b", "id": "odd-1", "data": {"emoji": "\ud83d\ude00", "big": 1e308, "tiny": 1e-300, "text": "\\u0000 is not a NUL", "deep": [[[[[[[[[[1]]]]]]]]]]}}"#;
    let (status, _, answer) = post(&api, "/v1/events", &token, Some("application/json"), odd).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let got = wait_until(WAIT, "the odd event and the two accepted ones", || async {
        let r = receiver.requests_to("/all");
        (r.len() >= 3).then_some(r)
    })
    .await;
    let odd = got
        .iter()
        .find(|r| r.header("webhook-id") == Some("odd-1"))
        .expect("odd delivered");
    assert_eq!(odd.json()["data"]["emoji"], "😀");
    assert_eq!(odd.json()["data"]["text"], "\\u0000 is not a NUL");
    // Exactly those three events exist: nothing refused was stored.
    wait_until(WAIT, "three stored events", || async {
        (env.count("SELECT count(*) FROM events").await == 3).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_amqp_events_are_parked_with_their_reason_and_the_rest_flows() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (tenant, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "all", "url": receiver.url("/all")}))
        .await;
    let (_conn, ch) = env.amqp().await;
    let event = |data: &str, extra: &str| {
        format!(r#"{{"tenant_id": "{tenant}", "event_type": "a.b", "data": {data}{extra}}}"#)
    };
    // (message, a word its reason must hold)
    let hostile: Vec<(String, &str)> = vec![
        (event(&deep(100_000), ""), "deeper"),
        (event(r#"{"k": "x\u0000y"}"#, ""), "NUL"),
        (event(r#"{"k\u0000": 1}"#, ""), "NUL"),
        (event(r#"["\udc00"]"#, ""), "surrogate"),
        (
            event("{}", r#", "occurred_at": "-5000-01-01T00:00:00Z""#),
            "occurred_at",
        ),
        (event("{}", r#", "source": "a\u0000b""#), "source"),
        (event("[1e400]", ""), "float"),
        ("{not json".to_owned(), "not a valid event message"),
        (
            event(&format!("\"{}\"", "x".repeat(2 * 1024 * 1024)), ""),
            "larger than",
        ),
    ];
    for (body, _) in &hostile {
        env.publish_event(&ch, "a.b", body.as_bytes()).await;
    }
    let good = event(r#"{"ok": true}"#, r#", "id": "good-1""#);
    env.publish_event(&ch, "a.b", good.as_bytes()).await;
    wait_until(WAIT, "the good event delivered", || async {
        receiver
            .requests_to("/all")
            .iter()
            .any(|r| r.header("webhook-id") == Some("good-1"))
            .then_some(())
    })
    .await;
    let parked = env
        .take_parked(&ch, &env.topology.invalid_queue(), hostile.len(), WAIT)
        .await;
    assert_eq!(
        parked.len(),
        hostile.len(),
        "each parked once, none looping"
    );
    for (body, word) in &hostile {
        let p = parked
            .iter()
            .find(|p| p.body == body.as_bytes())
            .unwrap_or_else(|| panic!("{} parked", &body[..body.len().min(80)]));
        assert!(p.reason.contains(word), "{:?} holds {word}", p.reason);
        assert!(!p.reason.contains("db error"), "{:?}", p.reason);
        assert!(
            p.tries.is_none(),
            "refused at once, not retried: {:?}",
            p.reason
        );
    }
    assert_eq!(env.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pathological_endpoint_answers_are_stored_cleanly_and_never_loop() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let hostile = HostileEndpoint::start().await;
    let receiver = Receiver::start().await;
    let (_, bad_token) = api.create_tenant("hostile").await;
    let (_, good_token) = api.create_tenant("healthy").await;
    let paths = [
        "/nul",
        "/invalid-utf8",
        "/huge",
        "/slow",
        "/reset",
        "/hang",
        "/escape",
    ];
    let mut webhooks = std::collections::HashMap::new();
    for path in paths {
        let w = api
            .create_webhook(
                &bad_token,
                json!({"name": path, "url": hostile.url(path), "timeout_seconds": 2, "retry_attempts": 0}),
            )
            .await;
        webhooks.insert(path, w["id"].as_str().unwrap().to_owned());
    }
    api.create_webhook(
        &good_token,
        json!({"name": "ok", "url": receiver.url("/ok")}),
    )
    .await;

    api.send_event(&bad_token, json!({"event_type": "a.b", "data": {}}))
        .await;
    // Meanwhile a healthy tenant's events arrive promptly, one by one.
    let slowest = one_by_one(&api, &good_token, &receiver, "/ok")
        .await
        .into_iter()
        .max()
        .unwrap_or_default();
    eprintln!("healthy tenant: slowest send → delivered {slowest:?}");
    assert!(slowest < Duration::from_secs(5), "{slowest:?}");

    // Every hostile delivery ends with exactly one attempt, recorded.
    let rows = wait_until(WAIT, "every hostile delivery finished", || async {
        let client = env.db().await;
        let rows = client
            .query(
                "SELECT d.webhook_id::text, d.status, d.attempt_count, a.status_code, a.response_body, a.error
                 FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id
                 JOIN webhooks w ON w.id = d.webhook_id JOIN tenants t ON t.id = w.tenant_id
                 WHERE t.name = 'hostile' AND d.status IN ('success', 'failed')",
                &[],
            )
            .await
            .unwrap();
        (rows.len() == paths.len()).then_some(rows)
    })
    .await;
    let row = |path: &str| {
        rows.iter()
            .find(|r| r.get::<_, String>(0) == webhooks[path])
            .unwrap_or_else(|| panic!("{path} recorded"))
    };
    for path in paths {
        let r = row(path);
        assert_eq!(r.get::<_, i32>(2), 1, "{path}: one attempt");
        for text in [r.get::<_, Option<String>>(4), r.get::<_, Option<String>>(5)]
            .into_iter()
            .flatten()
        {
            assert!(
                !text.contains('\0') && !text.contains('\u{1b}'),
                "{path}: {text:?}"
            );
            assert!(text.chars().count() <= 1000, "{path}: bounded");
        }
        assert_eq!(hostile.hits(path), 1, "{path}: posted once");
    }
    let nul = row("/nul");
    assert_eq!(nul.get::<_, String>(1), "success");
    assert_eq!(
        nul.get::<_, Option<String>>(4).as_deref(),
        Some("ok\u{FFFD}ok")
    );
    let bad_utf8 = row("/invalid-utf8");
    assert_eq!(bad_utf8.get::<_, String>(1), "failed");
    assert_eq!(bad_utf8.get::<_, Option<i32>>(3), Some(500));
    assert!(
        bad_utf8
            .get::<_, Option<String>>(4)
            .unwrap()
            .contains('\u{FFFD}')
    );
    assert_eq!(
        row("/huge").get::<_, Option<String>>(4).unwrap().len(),
        1000
    );
    assert_eq!(row("/reset").get::<_, String>(1), "failed");
    assert!(
        row("/hang")
            .get::<_, Option<String>>(5)
            .unwrap()
            .contains("timed out")
    );
    assert!(
        row("/escape")
            .get::<_, Option<String>>(4)
            .unwrap()
            .contains("<img src=x")
    );

    // The test call through the same send path answers, cleaned.
    let (status, answer) = api
        .call(
            Method::POST,
            &format!("/v1/webhooks/{}/test", webhooks["/nul"]),
            Some(&bad_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["success"], true);
    assert_eq!(answer["response"], "ok\u{FFFD}ok");
    assert_eq!(hostile.hits("/nul"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_calls_to_a_hanging_endpoint_hold_no_database_connection() {
    let env = TestEnv::with(&[("HERALD__DATABASE__POOL_SIZE", "4")]).await;
    let api = env.start_api().await;
    let hostile = HostileEndpoint::start().await;
    let (_, slow_token) = api.create_tenant("slow").await;
    let (_, other_token) = api.create_tenant("other").await;
    let hook = api
        .create_webhook(
            &slow_token,
            json!({"name": "hang", "url": hostile.url("/hang"), "timeout_seconds": 5}),
        )
        .await;
    let path = format!("/v1/webhooks/{}/test", hook["id"].as_str().unwrap());
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (http, url, token) = (
                api.http.clone(),
                format!("{}{path}", api.base),
                slow_token.clone(),
            );
            tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    // While they wait on the endpoint, another tenant is served at once.
    wait_until(WAIT, "test calls in flight", || async {
        (hostile.hits("/hang") >= 4).then_some(())
    })
    .await;
    for _ in 0..10 {
        let started = Instant::now();
        let (status, _) = api
            .call(Method::GET, "/v1/webhooks", Some(&other_token), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "served in {:?}",
            started.elapsed()
        );
    }
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let tested = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!((tested, limited), (4, 16), "{statuses:?}");
}

/// A database that refuses particular rows (a trigger, as a full disk or a
/// stack-depth error would): the rows stored with them are not held back,
/// and the messages are parked with Postgres's own words, once or after a
/// bounded number of tries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_database_refuses_are_parked_without_sinking_their_batch() {
    let env = TestEnv::with(&[("HERALD__AMQP__REQUEUE_PAUSE_MS", "20")]).await;
    env.db()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.id = 'poison-permanent' THEN
                     RAISE EXCEPTION 'stack depth limit exceeded' USING ERRCODE = '54001';
                 ELSIF NEW.id = 'poison-transient' THEN
                     RAISE EXCEPTION 'the disk hiccuped' USING ERRCODE = 'XX000';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_poison BEFORE INSERT ON events
                 FOR EACH ROW EXECUTE FUNCTION refuse_poison();
             CREATE FUNCTION refuse_poison_answer() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.response_body = 'poison' THEN
                     RAISE EXCEPTION 'unsupported Unicode escape sequence' USING ERRCODE = '22P05';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_poison_answer BEFORE INSERT ON delivery_attempts
                 FOR EACH ROW EXECUTE FUNCTION refuse_poison_answer();",
        )
        .await
        .unwrap();
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let hostile = HostileEndpoint::start().await;
    let (tenant, token) = api.create_tenant("acme").await;
    let (_, other_token) = api.create_tenant("other").await;
    api.create_webhook(
        &token,
        json!({"name": "ok", "url": receiver.url("/ok"), "event_types": ["a.*"]}),
    )
    .await;
    let poison_hook = api
        .create_webhook(
            &other_token,
            json!({"name": "poison", "url": hostile.url("/poison")}),
        )
        .await;
    api.create_webhook(
        &other_token,
        json!({"name": "fine", "url": receiver.url("/fine")}),
    )
    .await;

    let (_conn, ch) = env.amqp().await;
    let event = |id: &str| {
        format!(r#"{{"tenant_id": "{tenant}", "event_type": "a.b", "data": {{}}, "id": "{id}"}}"#)
    };
    for i in 0..100 {
        env.publish_event(&ch, "a.b", event(&format!("good-{i}")).as_bytes())
            .await;
        if i == 10 {
            env.publish_event(&ch, "a.b", event("poison-permanent").as_bytes())
                .await;
            env.publish_event(&ch, "a.b", event("poison-transient").as_bytes())
                .await;
        }
    }
    // The other tenant's event reaches an endpoint whose answer the
    // database refuses, and one whose answer it takes.
    api.send_event(
        &other_token,
        json!({"event_type": "x.y", "data": {}, "id": "answer-1"}),
    )
    .await;

    let delivered = wait_until(WAIT, "every good event delivered", || async {
        let r = receiver.requests_to("/ok");
        (r.len() >= 100).then_some(r)
    })
    .await;
    let mut ids: Vec<&str> = delivered
        .iter()
        .filter_map(|r| r.header("webhook-id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 100, "each good event once");

    let parked = env
        .take_parked(&ch, &env.topology.invalid_queue(), 2, WAIT)
        .await;
    assert_eq!(parked.len(), 2);
    let reason = |id: &str| {
        parked
            .iter()
            .find(|p| String::from_utf8_lossy(&p.body).contains(id))
            .map(|p| (p.reason.clone(), p.tries))
            .unwrap()
    };
    let (permanent, tries) = reason("poison-permanent");
    assert!(
        permanent.contains("stack depth limit exceeded (SQLSTATE 54001)"),
        "{permanent}"
    );
    assert_eq!(tries, None, "refused at once");
    let (transient, tries) = reason("poison-transient");
    assert!(transient.contains("gave up after 8 tries"), "{transient}");
    assert!(
        transient.contains("the disk hiccuped (SQLSTATE XX000)"),
        "{transient}"
    );
    assert_eq!(tries, Some(7));

    // The refused answer: posted once, parked in the failed queue, and the
    // delivery failed with the reason; the other webhook's is recorded.
    wait_until(WAIT, "the fine delivery", || async {
        (!receiver.requests_to("/fine").is_empty()).then_some(())
    })
    .await;
    let parked = env
        .take_parked(&ch, &env.topology.failed_queue(), 1, WAIT)
        .await;
    assert_eq!(parked.len(), 1);
    assert!(
        parked[0].reason.contains("SQLSTATE 22P05"),
        "{}",
        parked[0].reason
    );
    assert_eq!(hostile.hits("/poison"), 1);
    let poison_id = poison_hook["id"].as_str().unwrap().to_owned();
    let status = wait_until(WAIT, "the poisoned delivery failed", || async {
        let row = env
            .db()
            .await
            .query_one(
                "SELECT d.status, (SELECT error FROM delivery_attempts a WHERE a.delivery_id = d.id)
                 FROM deliveries d WHERE d.webhook_id::text = $1",
                &[&poison_id],
            )
            .await
            .unwrap();
        let status: String = row.get(0);
        (status == "failed").then(|| row.get::<_, Option<String>>(1))
    })
    .await;
    assert!(status.unwrap().starts_with("parked:"));
    assert_eq!(
        env.count("SELECT count(*) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id WHERE w.name = 'fine' AND d.status = 'success'").await,
        1
    );
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
async fn a_name_resolving_to_a_refused_address_fails_at_once_like_a_literal() {
    let env = TestEnv::with(&[("HERALD__SECURITY__ALLOW_PRIVATE_TARGETS", "false")]).await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let (_, token) = api.create_tenant("acme").await;
    let name = loopback_name().await;
    // The name passes the check at creation (it is not an address)...
    api.create_webhook(
        &token,
        json!({"name": "sneaky", "url": format!("http://{name}:9/hook")}),
    )
    .await;
    // ...and is refused when it resolves: failed at once with the reason,
    // no retry scheduled.
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
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
                .unwrap()?;
            Some((row.get(0), row.get(1), row.get(2)))
        })
        .await;
    assert!(error.as_deref().unwrap().contains("blocked"), "{error:?}");
    assert_eq!(count, 1);
    assert!(next.is_none());

    // Literal special-purpose addresses are refused at creation.
    for url in [
        "http://[::127.0.0.1]/",
        "http://[64:ff9b:1::a00:1]/",
        "http://[2002:7f00:1::]/",
        "http://[fec0::1]/",
        "http://localhost./",
    ] {
        let (status, problem) = api
            .call(
                Method::POST,
                "/v1/webhooks",
                Some(&token),
                Some(&json!({"name": url, "url": url})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "url");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_cannot_hold_every_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = TestEnv::with(&[
        ("HERALD__API__MAX_CONNECTIONS", "20"),
        ("HERALD__API__HEADER_READ_TIMEOUT_SECONDS", "1"),
    ])
    .await;
    let api = env.start_api().await;
    let addr = api.base.trim_start_matches("http://").to_owned();
    // 60 slow-loris clients: a header line every 200 ms, never finishing.
    let loris: Vec<_> = (0..60)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
                let _ = stream
                    .write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
                    .await;
                let mut buf = [0u8; 256];
                loop {
                    tokio::select! {
                        read = stream.read(&mut buf) => match read {
                            Ok(0) | Err(_) => return started.elapsed(),
                            Ok(_) => {}
                        },
                        () = tokio::time::sleep(Duration::from_millis(200)) => {
                            if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                                return started.elapsed();
                            }
                        }
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "a slow client was never cut off"
                    );
                }
            })
        })
        .collect();
    // While they hold what they can, a well-behaved client is served within
    // a few header timeouts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .get(format!("{}/healthz", api.base))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("served despite the slow clients");
    assert_eq!(resp.status(), StatusCode::OK);
    eprintln!(
        "healthz answered in {:?} under 60 slow clients",
        started.elapsed()
    );
    for l in loris {
        let held = l.await.unwrap();
        assert!(held < Duration::from_secs(15), "held {held:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_header_values_are_sealed_at_rest_and_answered_masked() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let value = "partner-key-0123456789abcdef";
    let hook = api
        .create_webhook(
            &token,
            json!({"name": "h", "url": receiver.url("/h"), "headers": {"X-Partner-Key": value, "X-Short": "abc"}}),
        )
        .await;
    assert_eq!(
        hook["headers"],
        json!({"X-Partner-Key": "****cdef", "X-Short": "****"})
    );
    let id = hook["id"].as_str().unwrap().to_owned();
    let (_, read) = api
        .call(
            Method::GET,
            &format!("/v1/webhooks/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(read["headers"], hook["headers"]);
    let stored: String = env
        .db()
        .await
        .query_one("SELECT row_to_json(w)::text FROM webhooks w", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !stored.contains(value) && !stored.contains("abc\""),
        "in clear: {stored}"
    );

    // The receiver gets the values; sending the masked answer back keeps them.
    let (status, patched) = api
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&token),
            Some(&json!({"headers": {"X-Partner-Key": "****cdef", "X-New": "new-value"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["headers"]["X-New"], "****");
    let sent = wait_until(WAIT, "a delivery with the new headers", || async {
        // Changes reach the worker within 2 s: send until one carries them.
        api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        receiver
            .requests_to("/h")
            .into_iter()
            .find(|r| r.header("x-new").is_some())
    })
    .await;
    assert_eq!(sent.header("x-partner-key"), Some(value));
    assert_eq!(sent.header("x-new"), Some("new-value"));
    assert_eq!(sent.header("x-short"), None, "a header left out is removed");

    // Values stored in clear by an older Herald are sealed when an api starts.
    env.db()
        .await
        .execute(
            "UPDATE webhooks SET headers = '{\"X-Old\": \"legacy-value-123456\"}', headers_sealed = NULL",
            &[],
        )
        .await
        .unwrap();
    let (_, legacy) = api
        .call(
            Method::GET,
            &format!("/v1/webhooks/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        legacy["headers"],
        json!({"X-Old": "****3456"}),
        "masked even before sealing"
    );
    let _second = env.start_api().await;
    let sealed = env
        .count("SELECT count(*) FROM webhooks WHERE headers_sealed IS NOT NULL AND headers::text NOT LIKE '%legacy%'")
        .await;
    assert_eq!(sealed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_endpoints_cannot_take_the_slots_of_a_healthy_one() {
    // The test worker has 32 slots: its lane for slow endpoints is 8.
    let env = TestEnv::new().await;
    let (api, _dispatcher, worker) = env.start_all().await;
    let hostile = HostileEndpoint::start().await;
    let receiver = Receiver::start().await;
    let (_, slow_token) = api.create_tenant("slow").await;
    let (_, good_token) = api.create_tenant("healthy").await;
    for i in 0..6 {
        api.create_webhook(
            &slow_token,
            json!({"name": format!("hang-{i}"), "url": hostile.url(&format!("/hang/{i}")),
                   "timeout_seconds": 3, "retry_attempts": 0}),
        )
        .await;
    }
    api.create_webhook(
        &good_token,
        json!({"name": "ok", "url": receiver.url("/ok")}),
    )
    .await;
    // 120 deliveries to six endpoints that never answer: without a lane
    // they would hold every slot for 3 s at a time.
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"event_type": "a.b", "data": {"i": i}}))
        .collect();
    let (status, _) = api
        .call(
            Method::POST,
            "/v1/events/batch",
            Some(&slow_token),
            Some(&json!({"events": batch})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let hanging = || {
        (0..6)
            .map(|i| hostile.hits(&format!("/hang/{i}")))
            .sum::<usize>()
    };
    wait_until(WAIT, "requests hanging", || async {
        (hanging() >= 6).then_some(())
    })
    .await;

    let latencies = one_by_one(&api, &good_token, &receiver, "/ok").await;
    let slowest = latencies.iter().copied().max().unwrap_or_default();
    eprintln!("healthy latencies: {latencies:?}");
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", worker.port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or_default()
    };
    eprintln!(
        "healthy tenant beside 6 hanging endpoints: slowest {slowest:?}; {} requests hanging; slow lane {}",
        hanging(),
        gauge("herald_slow_lane_deliveries ")
    );
    assert!(gauge("herald_slow_lane_deliveries ") <= 8.0);
    assert!(
        slowest < Duration::from_millis(1500),
        "a healthy delivery waited {slowest:?}"
    );
}

/// The promise behind every 202: a payload the check passes, Postgres
/// stores. Generated documents mix any text (NUL and control characters
/// included), any escapes (surrogates included), numbers of any size and
/// exponent, and nesting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_payload_the_check_accepts_postgres_stores() {
    use herald_shared::payload::{Limits, check};
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let leaf = prop_oneof![
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        prop::collection::vec(any::<u16>(), 1..4).prop_map(|units| {
            let escaped: String = units.iter().map(|u| format!("\\u{u:04x}")).collect();
            format!("\"{escaped}\"")
        }),
        (any::<i64>(), -400i32..400).prop_map(|(m, e)| format!("{m}e{e}")),
        (any::<u64>(), 0usize..120).prop_map(|(m, zeros)| format!("{m}{}", "0".repeat(zeros))),
        (0usize..30).prop_map(|zeros| format!("0.{}1", "0".repeat(zeros * 20))),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
    ];
    let document = leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((any::<String>(), inner), 0..6).prop_map(|pairs| {
                let members: Vec<String> = pairs
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap()))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    });

    let env = TestEnv::new().await;
    let client = env.db().await;
    let mut runner = TestRunner::default();
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..400 {
        let text = document.new_tree(&mut runner).unwrap().current();
        // Only valid JSON reaches the check (serde_json parses it first).
        if serde_json::from_str::<&serde_json::value::RawValue>(&text).is_err() {
            continue;
        }
        if check(&text, Limits::DATA).is_ok() {
            accepted += 1;
            client
                .query_one("SELECT $1::text::jsonb", &[&text])
                .await
                .unwrap_or_else(|e| panic!("accepted but not storable: {text}: {e:?}"));
        } else {
            refused += 1;
        }
    }
    eprintln!("{accepted} accepted and stored, {refused} refused");
    assert!(accepted > 50 && refused > 10, "{accepted} / {refused}");
}
