//! The console in a real browser (Debian's headless Chromium through
//! WebDriver) against the real api, dispatcher, worker and receiver.

use std::time::Duration;

use herald_testkit::{ADMIN_TOKEN, Browser, Receiver, TestEnv};
use reqwest::Method;
use serde_json::json;

const PAGE: Duration = Duration::from_secs(30);

/// Signs in with `token` on a fresh console page.
async fn sign_in(browser: &Browser, base: &str, token: &str) {
    browser.goto(&format!("{base}/console/")).await;
    let input = browser.wait_for("#token").await;
    browser.fill(&input, token).await;
    browser.click(&browser.wait_for("#sign-in").await).await;
}

/// Opens `hash` and waits until `css` holds `text`, loading the page again
/// while it does not (a page loads its data once; deliveries move on).
async fn until_shown(browser: &Browser, base: &str, hash: &str, css: &str, text: &str) {
    let deadline = std::time::Instant::now() + PAGE;
    for round in 0.. {
        // A new query string makes a full load; the session survives it.
        browser
            .goto(&format!("{base}/console/?load={round}{hash}"))
            .await;
        let settle = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < settle {
            if let Some(e) = browser.find(css).await
                && browser.text(&e).await.contains(text)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{css} never showed {text:?} on {hash}; the page shows: {}",
            browser.page_text().await
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engineer_creates_a_webhook_sees_deliveries_and_retries_a_failure() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let browser = Browser::start().await;
    let base = api.base.clone();

    sign_in(&browser, &base, &token).await;
    browser.wait_for("#webhooks-empty").await;
    browser.click(&browser.wait_for("#new-webhook").await).await;
    let form = "#webhook-form";
    browser.wait_for(form).await;

    // A refused field is named next to the field.
    browser
        .fill(&browser.wait_for("#name").await, "orders")
        .await;
    browser
        .fill(&browser.wait_for("#url").await, "not a url")
        .await;
    browser
        .click(&browser.wait_for("#save-webhook").await)
        .await;
    browser
        .wait_text(".field-error[data-field=url]", "URL", PAGE)
        .await;

    browser
        .fill(&browser.wait_for("#url").await, &receiver.url("hook"))
        .await;
    browser
        .fill(&browser.wait_for("#event_types").await, "order.*")
        .await;
    browser
        .click(&browser.wait_for("#save-webhook").await)
        .await;
    let secret = browser.wait_text("#secret", "whsec_", PAGE).await;
    assert!(secret.contains("whsec_"));
    // The token never reaches the address bar.
    assert!(!browser.url().await.contains(&token));

    api.send_event(
        &token,
        json!({"event_type": "order.created", "data": {"n": 1}}),
    )
    .await;
    until_shown(
        &browser,
        &base,
        "#/deliveries",
        "#deliveries tr[data-delivery-id] .status",
        "success",
    )
    .await;
    browser.screenshot("deliveries").await;

    // The webhook's page charts it.
    let webhook_id: String = env
        .db()
        .await
        .query_one("SELECT id::text FROM webhooks", &[])
        .await
        .expect("the webhook")
        .get(0);
    until_shown(
        &browser,
        &base,
        &format!("#/webhooks/{webhook_id}"),
        "#stats-totals",
        "1 succeeded",
    )
    .await;
    // Made in the console, it retries on the standard schedule, and its
    // page says so.
    let (_, made) = api
        .call(
            reqwest::Method::GET,
            &format!("/v1/webhooks/{webhook_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        made["retry_schedule"],
        json!(["5s", "5m", "30m", "2h", "5h", "10h", "10h"])
    );
    assert_eq!(made["retry_attempts"], 7);
    assert!(
        browser
            .page_text()
            .await
            .contains("7 retries after 5s, 5m, 30m, 2h, 5h, 10h, 10h")
    );
    let bars = browser
        .execute(
            "return document.querySelectorAll('#stats-chart rect.bar-succeeded').length",
            &[],
        )
        .await;
    assert_eq!(bars, json!(1), "one bucket with a success");
    browser.screenshot("webhook").await;

    // The endpoint fails with HTML in its answer: shown as text, never run.
    let hostile = r#"<img src=x onerror="window.__xss=1">"#;
    receiver.respond_with_body(500, hostile);
    let failing = api
        .send_event(
            &token,
            json!({"event_type": "order.updated", "data": {"n": 2}}),
        )
        .await;
    let delivery_id = herald_testkit::wait_until(PAGE, "the failed attempt", || async {
        let rows = env
            .db()
            .await
            .query(
                "SELECT d.id::text FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id
                 WHERE d.event_id = $1",
                &[&failing],
            )
            .await
            .expect("query");
        rows.first().map(|r| r.get::<_, String>(0))
    })
    .await;
    let page = format!("#/deliveries/{delivery_id}");
    until_shown(&browser, &base, &page, "#attempts", "500").await;
    let shown = browser
        .wait_text("#attempts pre.response", "onerror", PAGE)
        .await;
    assert!(
        shown.contains(hostile),
        "the answer is shown as text: {shown}"
    );
    let injected = browser
        .execute(
            "return [document.querySelectorAll('#attempts img').length, window.__xss === undefined]",
            &[],
        )
        .await;
    assert_eq!(
        injected,
        json!([0, true]),
        "no element made and no script run"
    );
    browser.screenshot("delivery").await;

    // The endpoint recovers; a retry from the page succeeds.
    receiver.respond_with_body(200, "ok");
    browser.click(&browser.wait_for("#retry").await).await;
    until_shown(&browser, &base, &page, ".status", "success").await;

    // In a phone-sized window the pages fit: wide tables scroll inside
    // their box, the page itself does not scroll sideways.
    browser.resize(400, 860).await;
    for hash in ["#/deliveries", "#/webhooks", page.as_str()] {
        until_shown(&browser, &base, hash, "h1", "").await;
        let fits = browser
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1",
                &[],
            )
            .await;
        assert_eq!(fits, json!(true), "{hash} scrolls sideways at 400 px");
    }
    browser.screenshot("deliveries-narrow").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_a_strict_policy() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let resp = api
        .http
        .get(format!("{}/console/", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"));
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    let js = api
        .http
        .get(format!("{}/console/app.js", api.base))
        .send()
        .await
        .unwrap();
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    for missing in [
        "/console/nope.js",
        "/console/../Cargo.toml",
        "/console/%2e%2e/Cargo.toml",
    ] {
        let r = api
            .http
            .get(format!("{}{missing}", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{missing}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_the_overview_creates_and_deletes_tenants() {
    let env = TestEnv::with(&[("HERALD__RETENTION__PURGE_INTERVAL_SECONDS", "200ms")]).await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (doomed, doomed_token) = api.create_tenant("first").await;
    api.create_webhook(
        &doomed_token,
        json!({"name": "h", "url": receiver.url("h")}),
    )
    .await;
    let event = api
        .send_event(&doomed_token, json!({"event_type": "a.b", "data": {}}))
        .await;
    env.wait_event_stored(&event).await;
    let (status, page) = api
        .call(
            Method::GET,
            "/v1/tenants?per_page=1",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 1);
    assert_eq!(page["data"][0]["name"], "first");
    let (_, tenant_token) = api.create_tenant("second").await;
    let (status, _) = api
        .call(Method::GET, "/v1/tenants", Some(&tenant_token), None)
        .await;
    assert_eq!(status, 403, "a tenant token cannot list tenants");
    let (status, _) = api
        .call(
            Method::GET,
            "/v1/tenants?per_page=500",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 422);

    let browser = Browser::start().await;
    sign_in(&browser, &api.base, ADMIN_TOKEN).await;
    // The operator lands on the overview.
    browser.wait_text("#overview-tenants", "2", PAGE).await;
    browser.wait_for("#overview-chart").await;
    browser.screenshot("overview").await;

    until_shown(&browser, &api.base, "#/tenants", "#tenants", "second").await;
    browser
        .fill(&browser.wait_for("#tenant-name").await, "third <b>co</b>")
        .await;
    browser
        .click(&browser.wait_for("#create-tenant").await)
        .await;
    browser.wait_text("#tenant-token", "hrld_", PAGE).await;
    until_shown(
        &browser,
        &api.base,
        "#/tenants",
        "#tenants",
        "third <b>co</b>",
    )
    .await;
    browser.screenshot("tenants").await;

    // Deleting the first tenant from the page: its data goes.
    let row = format!("tr[data-tenant-id='{doomed}'] .delete-tenant");
    browser.click(&browser.wait_for(&row).await).await;
    browser.accept_dialog().await;
    browser
        .wait_text("#tenant-deleted", "being deleted", PAGE)
        .await;
    herald_testkit::wait_until(PAGE, "the tenant's data removed", || async {
        let left = env
            .count(&format!(
                "SELECT (SELECT count(*) FROM tenants WHERE id = '{doomed}')
                      + (SELECT count(*) FROM webhooks WHERE tenant_id = '{doomed}')
                      + (SELECT count(*) FROM events WHERE tenant_id = '{doomed}')
                      + (SELECT count(*) FROM deliveries WHERE tenant_id = '{doomed}')"
            ))
            .await;
        (left == 0).then_some(())
    })
    .await;
    let text = browser.text(&browser.wait_for("#tenants").await).await;
    assert!(!text.contains(&doomed), "no longer listed: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_link_shows_one_customers_slice_and_cannot_write_when_read_only() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let (_, other) = api.create_tenant("other").await;
    let mine = api
        .create_webhook(
            &token,
            json!({"name": "customer-one", "url": receiver.url("one")}),
        )
        .await;
    api.create_webhook(
        &token,
        json!({"name": "customer-two", "url": receiver.url("two")}),
    )
    .await;
    api.create_webhook(
        &other,
        json!({"name": "elsewhere", "url": receiver.url("x")}),
    )
    .await;
    api.send_event(
        &token,
        json!({"event_type": "order.paid", "data": {"n": 1}}),
    )
    .await;
    herald_testkit::wait_until(PAGE, "both deliveries", || async {
        (receiver.requests().len() == 2).then_some(())
    })
    .await;
    let (status, session) = api
        .call(
            Method::POST,
            "/v1/portal-sessions",
            Some(&token),
            Some(&json!({"webhook_ids": [mine["id"]], "read_only": true})),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let portal_token = session["token"].as_str().expect("token");

    let browser = Browser::start().await;
    browser
        .goto(&format!(
            "{}{}",
            api.base,
            session["url"].as_str().expect("url")
        ))
        .await;
    browser.wait_text("#portal-badge", "read-only", PAGE).await;
    // The token left the address bar at once.
    let address = browser.url().await;
    assert!(!address.contains(portal_token), "{address}");
    assert!(address.ends_with("/console/#/webhooks"), "{address}");
    let list = browser.wait_text("#webhooks", "customer-one", PAGE).await;
    assert!(
        !list.contains("customer-two") && !list.contains("elsewhere"),
        "{list}"
    );
    assert!(browser.find("#new-webhook").await.is_none());
    assert!(browser.find("#nav-tenants").await.is_none());
    until_shown(
        &browser,
        &api.base,
        "#/deliveries",
        "#deliveries tr[data-delivery-id] .status",
        "success",
    )
    .await;
    let rows = browser
        .execute(
            "return document.querySelectorAll('#deliveries tr[data-delivery-id]').length",
            &[],
        )
        .await;
    assert_eq!(rows, json!(1), "only its webhook's delivery");
    browser.screenshot("portal").await;
    // Whatever the page hides, the server refuses a write with this token.
    let status = browser
        .execute(
            "return fetch('/v1/webhooks', {method: 'POST', headers: {
                 authorization: 'Bearer ' + sessionStorage.getItem('herald.token'),
                 'content-type': 'application/json'},
               body: JSON.stringify({name: 'x', url: 'http://127.0.0.1:9/'})}).then(r => r.status)",
            &[],
        )
        .await;
    assert_eq!(status, json!(403));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_form_previews_the_body_and_sets_authentication() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let browser = Browser::start().await;
    sign_in(&browser, &api.base, &token).await;
    browser.click(&browser.wait_for("#new-webhook").await).await;
    browser
        .fill(&browser.wait_for("#name").await, "authed")
        .await;
    browser
        .fill(&browser.wait_for("#url").await, &receiver.url("authed"))
        .await;
    // The body a delivery would carry, rendered by the server.
    browser
        .click(&browser.wait_for("#preview-template").await)
        .await;
    browser
        .wait_text("#template-preview", "order.created", PAGE)
        .await;
    // Bearer authentication, sent with every delivery.
    browser
        .click(&browser.wait_for("#auth-type option[value='bearer']").await)
        .await;
    browser
        .fill(
            &browser.wait_for("#auth-token").await,
            "s3cret-bearer-token",
        )
        .await;
    browser
        .click(&browser.wait_for("#save-webhook").await)
        .await;
    browser.wait_text("#secret", "whsec_", PAGE).await;
    let (_, list) = api
        .call(Method::GET, "/v1/webhooks", Some(&token), None)
        .await;
    assert_eq!(list["data"][0]["auth"]["type"], "bearer", "{list}");
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    let got = herald_testkit::wait_until(PAGE, "the delivery", || async {
        receiver.requests().into_iter().next()
    })
    .await;
    assert_eq!(
        got.header("authorization"),
        Some("Bearer s3cret-bearer-token")
    );

    // The browser goes with the test: nothing of its process group is left.
    let group = browser.process_group();
    drop(browser);
    herald_testkit::wait_until(PAGE, "the browser's processes gone", || async {
        let left = std::process::Command::new("pgrep")
            .args(["-g", &group.to_string()])
            .output()
            .expect("pgrep");
        left.stdout.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_page_lists_types_with_schemas_and_examples() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let (_, token) = api.create_tenant("acme").await;
    for body in [
        json!({"name": "invoice.paid", "group": "Billing",
               "description": "<img src=x onerror=\"document.title='pwned'\">Paid in full.",
               "schema": {"type": "object", "required": ["amount"]},
               "examples": [{"amount": 1250}]}),
        json!({"name": "invoice.sent", "group": "Billing", "deprecated": true}),
        json!({"name": "user.created"}),
    ] {
        let (status, answer) = api
            .call(Method::POST, "/v1/event-types", Some(&token), Some(&body))
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    let browser = Browser::start().await;
    sign_in(&browser, &api.base, &token).await;
    // Signed in once the landing page shows; only then is the token kept.
    browser.wait_for("#new-webhook").await;
    until_shown(
        &browser,
        &api.base,
        "#/event-types",
        "#event-types",
        "invoice.paid",
    )
    .await;
    let page = browser.text(&browser.wait_for("#event-types").await).await;
    for shown in [
        "Billing",
        "invoice.sent",
        "deprecated",
        "Other",
        "user.created",
    ] {
        assert!(page.contains(shown), "{shown:?} in {page}");
    }
    // The description is text, never markup.
    assert!(page.contains("<img src=x"), "{page}");
    assert!(browser.find("#event-types img").await.is_none());
    let example = browser
        .text(
            &browser
                .wait_for("[data-name='invoice.paid'] .event-type-example")
                .await,
        )
        .await;
    assert!(example.contains("1250"), "{example}");
    let title = browser.execute("return document.title", &[]).await;
    assert_ne!(title, json!("pwned"));
}
