//! `GET /openapi.json`: an OpenAPI 3 document of every route the api
//! serves, whose references all resolve.

use std::collections::BTreeSet;

use herald_testkit::TestEnv;
use reqwest::Method;
use serde_json::Value;

/// Every route the api serves (the DESIGN's table and the operations).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/tenants"),
    ("post", "/v1/tenants"),
    ("delete", "/v1/tenants/{id}"),
    ("get", "/v1/portal-sessions"),
    ("post", "/v1/portal-sessions"),
    ("get", "/v1/portal-sessions/current"),
    ("delete", "/v1/portal-sessions/{id}"),
    ("get", "/v1/overview"),
    ("get", "/v1/event-types"),
    ("post", "/v1/event-types"),
    ("get", "/v1/event-types/{name}"),
    ("patch", "/v1/event-types/{name}"),
    ("delete", "/v1/event-types/{name}"),
    ("get", "/v1/catalog"),
    ("patch", "/v1/catalog"),
    ("post", "/v1/events/{id}/resend"),
    ("post", "/v1/webhooks/{id}/replay"),
    ("get", "/v1/replays/{id}"),
    ("post", "/v1/replays/{id}/cancel"),
    ("get", "/v1/webhooks/{id}/stats"),
    ("post", "/v1/webhooks/preview"),
    ("post", "/v1/tenants/{id}/tokens"),
    ("get", "/v1/tokens"),
    ("delete", "/v1/tokens/{id}"),
    ("post", "/v1/webhooks"),
    ("get", "/v1/webhooks"),
    ("get", "/v1/webhooks/{id}"),
    ("patch", "/v1/webhooks/{id}"),
    ("put", "/v1/webhooks/{id}"),
    ("delete", "/v1/webhooks/{id}"),
    ("post", "/v1/webhooks/{id}/test"),
    ("post", "/v1/webhooks/{id}/rotate-secret"),
    ("post", "/v1/webhooks/{id}/rotate-signing-key"),
    ("post", "/v1/webhooks/{id}/recover"),
    ("post", "/v1/events"),
    ("post", "/v1/events/batch"),
    ("get", "/v1/events"),
    ("get", "/v1/events/{id}"),
    ("get", "/v1/deliveries"),
    ("get", "/v1/deliveries/{id}"),
    ("post", "/v1/deliveries/{id}/retry"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().unwrap_or_default().to_owned());
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_covers_every_route_and_resolves() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let (status, doc) = api.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "post", "patch", "delete", "put"].contains(&method.as_str()) {
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} has responses"
                );
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);

    // Every documented route is really served (no 404 from the fallback;
    // the calls are unauthenticated, so 401 is the expected answer).
    for (method, path) in &expected {
        let path = path
            .replace("{id}", "0190a0a0-0000-7000-8000-000000000000")
            .replace("{name}", "invoice.paid");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, _) = api.call(method.clone(), &path, None, None).await;
        assert_ne!(status, 404, "{method} {path} is served");
        assert_ne!(status, 405, "{method} {path} is served");
    }

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .expect("a schema reference");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} resolves"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // The seeds' request shapes: the retry forms are fields, the other
    // names they use are documented as accepted.
    let input = &doc["components"]["schemas"]["WebhookInput"];
    for field in [
        "retry_schedule",
        "retry_backoff_seconds",
        "exponential_base",
        "max_delay_seconds",
        "jitter",
    ] {
        assert!(input["properties"][field].is_object(), "{field} in {input}");
    }
    assert!(input["properties"]["signing"].is_object());
    let described = input["description"].as_str().unwrap_or_default();
    for alias in [
        "`events`",
        "`max_retries`",
        "`enabled`",
        "`active`",
        "`retry_backoff`",
        "`initial_delay`",
        "`max_delay`",
    ] {
        assert!(described.contains(alias), "{alias} in {described}");
    }
    let formats = doc["components"]["schemas"]["Format"].to_string();
    for format in ["vaultls", "securebase", "vaulytica", "webnet"] {
        assert!(formats.contains(format), "{format} in {formats}");
    }

    // Every problem answer is documented as application/problem+json, and
    // each status the api really gives is listed where it can happen.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            for (status, answer) in responses {
                assert!(
                    answer["content"]
                        .get("application/json")
                        .is_none_or(|c| c["schema"]["$ref"] != "#/components/schemas/Problem"),
                    "{method} {path} {status}: a problem documented as application/json"
                );
            }
            for status in ["405", "431", "500"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lists {status}"
                );
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} lists {status}"
                    );
                }
            }
        }
    }
    let events = &doc["paths"]["/v1/events"]["post"]["responses"];
    assert!(events["415"]["content"]["application/problem+json"].is_object());
    assert!(events["401"]["content"]["application/problem+json"].is_object());
    assert!(events["503"].is_object() && events["429"].is_object());
}
