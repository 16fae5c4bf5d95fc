//! The OpenAPI document against the server that serves it (real PostgreSQL): every
//! documented operation reaches a handler, the router registers nothing undocumented, the
//! operation set is the API's contract, and real responses of every JSON endpoint —
//! successes and errors — validate against their documented schema (undocumented fields
//! fail).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::schema::Validator;
use common::{sentiment_jsonl, Api};
use rankfit_domain::dataset::suite::sample_glue_folder;
use rankfit_domain::prediction::{Output, Prediction};
use rankfit_domain::rank::RankMap;
use rankfit_store::{events, queue, studies};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The API's operations. Adding or removing a route changes this list on purpose.
const OPERATIONS: &[(&str, &str)] = &[
    ("GET", "/me"),
    ("POST", "/teams"),
    ("GET", "/teams"),
    ("POST", "/tokens"),
    ("DELETE", "/tokens/{id}"),
    ("POST", "/datasets"),
    ("GET", "/datasets"),
    ("GET", "/datasets/{id}"),
    ("DELETE", "/datasets/{id}"),
    ("GET", "/datasets/{id}/rows"),
    ("POST", "/suites"),
    ("GET", "/suites"),
    ("GET", "/suites/{id}"),
    ("POST", "/runs"),
    ("GET", "/runs"),
    ("GET", "/runs/{id}"),
    ("POST", "/runs/{id}/cancel"),
    ("POST", "/runs/{id}/publish"),
    ("DELETE", "/runs/{id}/publish"),
    ("GET", "/runs/{id}/metrics"),
    ("GET", "/runs/{id}/rank-map"),
    ("GET", "/runs/{id}/events"),
    ("GET", "/runs/{id}/artifacts"),
    ("GET", "/runs/{id}/adapter"),
    ("GET", "/runs/{id}/predictions"),
    ("POST", "/studies"),
    ("GET", "/studies"),
    ("GET", "/studies/{id}"),
    ("POST", "/studies/{id}/cancel"),
    ("POST", "/studies/{id}/extend"),
    ("POST", "/studies/{id}/publish"),
    ("DELETE", "/studies/{id}/publish"),
    ("GET", "/studies/{id}/table"),
    ("GET", "/studies/{id}/events"),
    ("GET", "/models"),
    ("GET", "/tasks"),
    ("GET", "/leaderboards"),
    ("GET", "/public/leaderboards"),
    ("GET", "/public/leaderboards/{dataset_id}"),
    ("GET", "/workers"),
    ("GET", "/queue"),
];

async fn document(api: &Api) -> Value {
    let (status, doc) = api.get("", "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    doc
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                out.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_operation_reaches_its_handler() {
    let api = Api::start(1 << 20).await;
    let token = api.team("admins", true).await;
    let doc = document(&api).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let expected: BTreeSet<(String, String)> = OPERATIONS.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(operations(&doc), expected, "the documented operations are the API's");
    for (method, path) in &expected {
        let op = &doc["paths"][path][method.to_ascii_lowercase()];
        assert!(op["summary"].is_string() || op["description"].is_string(), "{method} {path} says what it does");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} documents its responses");
        // A documented operation is served: it answers with the handler's own status, not
        // the API's fallback (404 "API route not found") or 405.
        let url = format!(
            "{}{}",
            api.base,
            path.replace("{id}", &uuid::Uuid::new_v4().to_string()).replace("{dataset_id}", &uuid::Uuid::new_v4().to_string())
        );
        let mut req = api.http.request(Method::from_bytes(method.as_bytes()).unwrap(), url).bearer_auth(&token);
        if method == "POST" {
            req = req.json(&json!({}));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(!body.contains("API route not found"), "{method} {path} is documented but not routed: {body}");
    }
    // Routes are registered only with their documentation (`routes!`), never bare.
    let source = include_str!("../src/api/mod.rs");
    let bare: Vec<&str> = source.lines().filter(|l| l.contains(".route(") && !l.contains("/openapi.json")).collect();
    assert!(bare.is_empty(), "undocumented routes in api/mod.rs: {bare:?}");
    // Every schema reference resolves.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {name}");
    }
}

/// Calls the API and checks the response against the document.
struct Checked<'a> {
    api: &'a Api,
    doc: &'a Value,
    checked: std::cell::RefCell<BTreeSet<(String, String, u16)>>,
}

impl Checked<'_> {
    async fn call(&self, token: &str, method: &str, template: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req =
            self.api.http.request(Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", self.api.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        self.check(method, template, resp).await
    }

    async fn check(&self, method: &str, template: &str, resp: reqwest::Response) -> (StatusCode, Value) {
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        let v = Validator::new(self.doc);
        let schema = v
            .response_schema(method, template, status.as_u16())
            .unwrap_or_else(|| panic!("{method} {template} answered {status}, which is not documented: {value}"));
        let errors = v.validate(schema, &value);
        assert!(
            errors.is_empty(),
            "{method} {template} {status}: the response does not match the document:\n{}\n{value:#}",
            errors.join("\n")
        );
        self.checked.borrow_mut().insert((method.into(), template.into(), status.as_u16()));
        (status, value)
    }
}

#[tokio::test]
async fn real_responses_validate_against_the_document() {
    let api = Api::start(1 << 20).await;
    let admin = api.team("admins", true).await;
    let doc = document(&api).await;
    let c = Checked { api: &api, doc: &doc, checked: Default::default() };

    // Teams and tokens.
    c.call(&admin, "GET", "/me", "/me", None).await;
    let (status, created) = c.call(&admin, "POST", "/teams", "/teams", Some(json!({"name": "builders"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let t = created["token"]["secret"].as_str().unwrap().to_string();
    c.call(&admin, "GET", "/teams", "/teams", None).await;
    c.call(&t, "GET", "/teams", "/teams", None).await; // 403 for a non-admin team
    c.call(&t, "POST", "/tokens", "/tokens", Some(json!({"name": "ci"}))).await;
    c.call(&t, "POST", "/teams", "/teams", Some(json!({"name": 5}))).await; // 403 before the body matters

    // Datasets and suites (multipart uploads).
    let form = reqwest::multipart::Form::new()
        .text("name", "sentiment")
        .part("file", reqwest::multipart::Part::bytes(sentiment_jsonl(40).into_bytes()).file_name("s.jsonl"));
    let resp = api.http.post(format!("{}/datasets", api.base)).bearer_auth(&t).multipart(form).send().await.unwrap();
    let (status, ds) = c.check("POST", "/datasets", resp).await;
    assert_eq!(status, StatusCode::CREATED);
    let ds = ds["dataset"]["id"].as_str().unwrap().to_string();
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(b"{not json".to_vec()).file_name("bad.jsonl"));
    let resp = api.http.post(format!("{}/datasets", api.base)).bearer_auth(&t).multipart(form).send().await.unwrap();
    assert_eq!(c.check("POST", "/datasets", resp).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let mut form = reqwest::multipart::Form::new().text("name", "GLUE");
    for f in sample_glue_folder() {
        form = form.part("file", reqwest::multipart::Part::bytes(f.bytes).file_name(f.path));
    }
    let resp = api.http.post(format!("{}/suites", api.base)).bearer_auth(&t).multipart(form).send().await.unwrap();
    let (status, suite) = c.check("POST", "/suites", resp).await;
    assert_eq!(status, StatusCode::CREATED);
    let suite_id = suite["suite"]["id"].as_str().unwrap().to_string();
    c.call(&t, "GET", "/suites", "/suites", None).await;
    c.call(&t, "GET", "/suites/{id}", &format!("/suites/{suite_id}"), None).await;
    c.call(&t, "GET", "/datasets", "/datasets", None).await;
    c.call(&t, "GET", "/datasets/{id}", &format!("/datasets/{ds}"), None).await;
    c.call(&t, "GET", "/datasets/{id}", &format!("/datasets/{}", uuid::Uuid::new_v4()), None).await; // 404

    // Runs: dry run, create, validation errors, and a run finished the way a worker does.
    let run_body = json!({"dataset_id": ds, "method": "adalora", "budget": 2, "training": {"max_steps": 4}});
    let (status, _) = c.call(&t, "POST", "/runs", "/runs?dry_run=true", Some(run_body.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, run) = c.call(&t, "POST", "/runs", "/runs", Some(run_body)).await;
    assert_eq!(status, StatusCode::CREATED);
    let run = run["run"]["id"].as_str().unwrap().to_string();
    c.call(&t, "POST", "/runs", "/runs", Some(json!({"dataset_id": ds, "method": "nope", "budget": 2}))).await; // 422
    let lease = queue::claim(&api.db.pool, "test-worker", Duration::from_secs(60)).await.unwrap().unwrap();
    let token = lease.token;
    let id = lease.run.id;
    assert!(events::record_metric(&api.db.pool, id, token, 1, "train", "loss", 0.7).await.unwrap());
    let map = RankMap {
        step: 2,
        budget: 4,
        modules: vec![("bert.encoder.layer.0.attention.self.query".into(), 2), ("bert.encoder.layer.0.attention.self.value".into(), 2)],
    };
    assert!(events::record_ranks(&api.db.pool, id, token, &map).await.unwrap());
    assert!(events::record_progress(&api.db.pool, id, token, &json!({"phase": "training", "step": 2, "total": 4})).await.unwrap());
    let preds: Vec<Prediction> = (0..4u32)
        .map(|i| Prediction {
            index: i,
            predicted: Output::Class { index: 0, label: "negative".into() },
            reference: Output::Class { index: (i % 2) as usize, label: "x".into() },
            input: None,
            scores: [("accuracy".to_string(), f64::from(i % 2 == 0))].into_iter().collect(),
        })
        .collect();
    assert!(studies::record_predictions(&api.db.pool, id, token, "test", &preds).await.unwrap());
    assert!(events::record_evaluation(&api.db.pool, id, token, "test", &json!({"accuracy": 0.5, "f1": 0.0, "mcc": 0.0})).await.unwrap());
    assert!(rankfit_store::artifacts::record(&api.db.pool, id, token, "adapter_peft", "runs/x/peft.zip", 10, "00").await.unwrap());
    let summary = json!({"final_ranks": [["bert.encoder.layer.0.attention.self.query", 2]], "train_seconds": 3.0});
    assert!(queue::finish(&api.db.pool, id, token, &queue::Outcome::Succeeded { summary }).await.unwrap());
    c.call(&t, "GET", "/runs", "/runs", None).await;
    c.call(&t, "GET", "/runs", "/runs?status=bogus", None).await; // 400
    c.call(&t, "GET", "/runs/{id}", &format!("/runs/{run}"), None).await;
    c.call(&t, "GET", "/runs/{id}/metrics", &format!("/runs/{run}/metrics"), None).await;
    c.call(&t, "GET", "/runs/{id}/rank-map", &format!("/runs/{run}/rank-map"), None).await;
    c.call(&t, "GET", "/runs/{id}/artifacts", &format!("/runs/{run}/artifacts"), None).await;
    c.call(&t, "POST", "/runs/{id}/publish", &format!("/runs/{run}/publish"), None).await; // 409: private dataset
    c.call(&t, "DELETE", "/runs/{id}/publish", &format!("/runs/{run}/publish"), None).await;
    c.call(&t, "POST", "/runs/{id}/cancel", &format!("/runs/{run}/cancel"), None).await;
    c.call(&t, "GET", "/leaderboards", &format!("/leaderboards?dataset_id={ds}"), None).await;
    c.call(&t, "GET", "/models", "/models", None).await;
    c.call(&t, "GET", "/tasks", "/tasks", None).await;
    c.call(&t, "GET", "/public/leaderboards", "/public/leaderboards", None).await;
    c.call(&t, "GET", "/public/leaderboards/{dataset_id}", &format!("/public/leaderboards/{ds}"), None).await; // 404: private

    // Studies.
    let spec = json!({"name": "grid", "dataset_ids": [ds], "methods": ["lora", "adalora"], "budgets": [2], "seeds": 1, "training": {"max_steps": 4}});
    let (status, _) = c.call(&t, "POST", "/studies", "/studies?dry_run=true", Some(spec.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, study) = c.call(&t, "POST", "/studies", "/studies", Some(spec.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    let study = study["study"]["id"].as_str().unwrap().to_string();
    c.call(&t, "POST", "/studies", "/studies", Some(spec)).await; // 409: the name is taken
    c.call(&t, "GET", "/studies", "/studies", None).await;
    c.call(&t, "GET", "/studies/{id}", &format!("/studies/{study}"), None).await;
    c.call(&t, "POST", "/studies/{id}/extend", &format!("/studies/{study}/extend"), Some(json!({"seeds": 2}))).await;
    c.call(&t, "GET", "/studies/{id}/table", &format!("/studies/{study}/table"), None).await;
    c.call(&t, "POST", "/studies/{id}/publish", &format!("/studies/{study}/publish"), None).await;
    c.call(&t, "DELETE", "/studies/{id}/publish", &format!("/studies/{study}/publish"), None).await;
    c.call(&t, "POST", "/studies/{id}/cancel", &format!("/studies/{study}/cancel"), None).await;

    // The fleet (admin teams), with one registered worker.
    let worker = rankfit_store::workers::NewWorker {
        name: "gpu-box:7".into(),
        host: "gpu-box".into(),
        pid: 7,
        device: "cuda:0".into(),
        features: vec!["cuda".into()],
        version: "0.1.0".into(),
        lease_secs: 30,
    };
    rankfit_store::workers::register(&api.db.pool, &worker).await.unwrap();
    let (status, workers) = c.call(&admin, "GET", "/workers", "/workers", None).await;
    assert_eq!((status, &workers["workers"][0]["state"]), (StatusCode::OK, &json!("alive")));
    c.call(&t, "GET", "/workers", "/workers", None).await; // 403
    c.call(&admin, "GET", "/queue", "/queue", None).await;

    // Every JSON operation was exercised at least once.
    let done: BTreeSet<(String, String)> = c.checked.borrow().iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    let file_endpoints =
        ["/datasets/{id}/rows", "/runs/{id}/events", "/runs/{id}/adapter", "/runs/{id}/predictions", "/studies/{id}/events"];
    let missing: Vec<_> = OPERATIONS
        .iter()
        .filter(|(m, p)| !file_endpoints.contains(p) && *m != "DELETE" || *p == "/runs/{id}/publish")
        .filter(|(m, p)| !done.contains(&(m.to_string(), p.to_string())))
        .filter(|(m, p)| !(*m == "DELETE" && (*p == "/datasets/{id}" || *p == "/tokens/{id}")))
        .collect();
    assert!(missing.is_empty(), "JSON operations not exercised: {missing:?}");
}
