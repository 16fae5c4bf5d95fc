//! Hostile and careless clients: another team's token on every endpoint, revoked tokens,
//! traversal and injection strings, wrong columns, oversized streams, and many uploads at
//! once. A real server on a loopback port, a real PostgreSQL.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{error_code, sentiment_jsonl, Api};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Team A's dataset and run, and a token of team B.
async fn two_teams(api: &Api) -> (String, String, String, String) {
    let a = api.team("owners", false).await;
    let b = api.team("strangers", false).await;
    let (status, body) = api.upload(&a, "private", "p.jsonl", sentiment_jsonl(20).as_bytes(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ds = body["dataset"]["id"].as_str().unwrap().to_string();
    let (status, body) = api.post(&a, "/runs", json!({"dataset_id": ds, "method": "lora", "budget": 2})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run = body["run"]["id"].as_str().unwrap().to_string();
    (a, b, ds, run)
}

#[tokio::test]
async fn every_endpoint_hides_another_teams_resources() {
    let api = Api::start(1 << 20).await;
    let (a, b, ds, run) = two_teams(&api).await;
    let (status, body) = api.post(&a, "/tokens", json!({"name": "ci"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let a_token_id = body["token"]["id"].as_str().unwrap().to_string();

    let probes: Vec<(Method, String)> = vec![
        (Method::GET, format!("/datasets/{ds}")),
        (Method::DELETE, format!("/datasets/{ds}")),
        (Method::GET, format!("/runs/{run}")),
        (Method::POST, format!("/runs/{run}/cancel")),
        (Method::GET, format!("/runs/{run}/metrics")),
        (Method::GET, format!("/runs/{run}/rank-map")),
        (Method::GET, format!("/runs/{run}/events")),
        (Method::GET, format!("/runs/{run}/artifacts")),
        (Method::GET, format!("/runs/{run}/adapter")),
        (Method::GET, format!("/runs/{run}/predictions")),
        (Method::POST, format!("/runs/{run}/publish")),
        (Method::DELETE, format!("/runs/{run}/publish")),
        (Method::GET, format!("/leaderboards?dataset_id={ds}")),
        (Method::GET, format!("/public/leaderboards/{ds}")),
        (Method::GET, format!("/datasets/{ds}/rows")),
        (Method::DELETE, format!("/tokens/{a_token_id}")),
    ];
    for (method, path) in &probes {
        let mut req = api.http.request(method.clone(), format!("{}{path}", api.base)).bearer_auth(&b);
        if *method == Method::POST {
            req = req.json(&json!({}));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path} with another team's token: {body}");
        assert!(!body.to_string().contains(&ds) && !body.to_string().contains(&run), "{method} {path} leaks ids: {body}");
    }
    // Lists filtered by team A's ids stay empty for team B.
    for path in [
        format!("/runs?dataset_id={ds}"),
        "/runs".to_string(),
        "/datasets".to_string(),
        "/suites".to_string(),
        "/public/leaderboards".to_string(),
    ] {
        let (status, body) = api.get(&b, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(!body.to_string().contains(&ds), "{path} shows team A's dataset: {body}");
    }
    // Nothing of team A's changed: the dataset, the queued run and the token are all still there.
    let (status, _) = api.get(&a, &format!("/datasets/{ds}")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = api.get(&a, &format!("/runs/{run}")).await;
    assert_eq!(body["run"]["status"], "queued");
    assert_eq!(api.delete(&a, &format!("/tokens/{a_token_id}")).await, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once() {
    let api = Api::start(1 << 20).await;
    let first = api.team("revokers", false).await;
    let (status, body) = api.post(&first, "/tokens", json!({"name": "laptop"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["token"]["secret"].as_str().unwrap().to_string();
    let id = body["token"]["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("rf_"), "{secret}");
    let (status, _) = api.get(&secret, "/me").await;
    assert_eq!(status, StatusCode::OK);
    // Only the hash is stored.
    let stored: i64 = sqlx::query_scalar("select count(*) from api_token where token_hash = sha256(convert_to($1, 'UTF8'))")
        .bind(&secret)
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1, "the token is stored as its sha256");
    let plain: i64 = sqlx::query_scalar("select count(*) from api_token where position(convert_to($1, 'UTF8') in token_hash) > 0")
        .bind(&secret)
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
    assert_eq!(plain, 0, "the secret itself is never stored");

    assert_eq!(api.delete(&first, &format!("/tokens/{id}")).await, StatusCode::NO_CONTENT);
    let (status, body) = api.get(&secret, "/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body), "unauthorized");
    assert_eq!(api.delete(&first, &format!("/tokens/{id}")).await, StatusCode::NOT_FOUND, "revoking twice");
    let (status, _) = api.get(&first, "/me").await;
    assert_eq!(status, StatusCode::OK, "other tokens of the team keep working");
}

#[tokio::test]
async fn traversal_and_injection_strings_are_plain_data() {
    let api = Api::start(1 << 20).await;
    let token = api.team("mallory", false).await;
    let names = ["../../../../etc/passwd", "x'); drop table run; --", "..\\..\\boot.ini", "%2e%2e%2fsecret"];
    for (i, name) in names.iter().enumerate() {
        let file_name = format!("../../{i}/../evil.jsonl");
        let (status, body) = api.upload(&token, name, &file_name, sentiment_jsonl(10).as_bytes(), &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        assert_eq!(body["dataset"]["name"], *name, "names are stored verbatim");
    }
    // Every stored file lies inside the artifact store, under a name rankfit chose.
    let root = api.artifacts_dir.path().canonicalize().unwrap();
    let files = api.stored_files();
    assert_eq!(files.len(), names.len());
    for f in &files {
        let f = f.canonicalize().unwrap();
        assert!(f.starts_with(&root), "{} escapes the store", f.display());
        let rel = f.strip_prefix(&root).unwrap().to_string_lossy().to_string();
        assert!(!rel.contains("evil") && !rel.contains("passwd") && !rel.contains(".."), "stored as {rel}");
    }
    assert_eq!(api.count("run").await, 0, "the run table survived");

    // Injection attempts in filters are values, not SQL.
    let (_, list) = api.get(&token, "/datasets").await;
    let ds = list["datasets"][0]["id"].as_str().unwrap().to_string();
    for (path, want) in [
        ("/runs?status=queued'%20or%20'1'%3D'1", StatusCode::UNPROCESSABLE_ENTITY),
        ("/runs?method=lora%3B%20delete%20from%20run", StatusCode::UNPROCESSABLE_ENTITY),
        ("/runs?base_model=x'%20or%201%3D1--", StatusCode::OK),
        ("/runs?dataset_id=1%20or%201%3D1", StatusCode::BAD_REQUEST),
        ("/runs?limit=1;drop%20table%20team", StatusCode::BAD_REQUEST),
    ] {
        let (status, body) = api.get(&token, path).await;
        assert_eq!(status, want, "{path}: {body}");
        if status == StatusCode::OK {
            assert!(body["runs"].as_array().unwrap().is_empty(), "{path}: {body}");
        } else {
            assert!(!body["error"]["message"].as_str().unwrap_or("").is_empty(), "{path}: a message a person can act on");
        }
    }
    let (status, body) = api.get(&token, &format!("/leaderboards?dataset_id={ds}&base_model=x'%20or%20'1'%3D'1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["cells"].as_array().unwrap().is_empty(), "{body}");
    assert_eq!(api.count("team").await, 1);
    assert_eq!(api.count("dataset").await, names.len() as i64);
}

#[tokio::test]
async fn wrong_columns_and_bad_encodings_name_what_to_fix() {
    let api = Api::start(1 << 20).await;
    let token = api.team("sloppy", false).await;
    let csv = "review,stars\ngreat movie,5\nawful movie,1\n";
    let (status, body) =
        api.upload(&token, "csv-wrong-label", "r.csv", csv.as_bytes(), &[("text_column", "review"), ("label_column", "sentiment")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let msg = body.to_string();
    assert!(msg.contains("sentiment"), "names the missing column: {msg}");

    let (status, body) = api.upload(&token, "csv-no-text", "r.csv", "a,b\n1,2\n".as_bytes(), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let tsv = "sentence\tlabel\nfine\t1\n";
    let (status, body) = api.upload(&token, "glue-bogus", "t.tsv", tsv.as_bytes(), &[("glue_task", "notatask")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("notatask"), "{body}");

    // Invalid UTF-8 in the middle of a CSV: the line is named.
    let mut bad = b"text,label\nfine,pos\nalso fine,neg\n".to_vec();
    bad.extend_from_slice(b"broken \xc3\x28 bytes,pos\n");
    let (status, body) = api.upload(&token, "csv-utf8", "u.csv", &bad, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("UTF-8"), "{body}");
    assert!(body.to_string().contains("line 4") || body["error"]["details"]["errors"][0]["line"] == 4, "names line 4: {body}");

    // Absurd run configs: 422 naming the field.
    let (_, good) = api.upload(&token, "good", "g.jsonl", sentiment_jsonl(20).as_bytes(), &[]).await;
    let ds = good["dataset"]["id"].as_str().unwrap();
    for (config, field) in [
        (json!({"method": "lora", "budget": 0}), "budget"),
        (json!({"method": "lora", "budget": -3}), "budget"),
        (json!({"method": "rolora", "budget": 1_000_000_000u64}), "budget"),
        (json!({"method": "lora", "budget": 4, "training": {"max_seq_len": 1_000_000}}), "training.max_seq_len"),
        (json!({"method": "lora", "budget": 4, "training": {"batch_size": 0}}), "training.batch_size"),
        (json!({"method": "lora", "budget": 4, "training": {"target_modules": ["../../x"]}}), "training.target_modules"),
    ] {
        let mut body = config.clone();
        body["dataset_id"] = json!(ds);
        let (status, resp) = api.post(&token, "/runs", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{config}: {resp}");
        let named = resp["error"]["details"]["field"].as_str().map(|f| f.starts_with(field)).unwrap_or(false)
            || resp["error"]["message"].as_str().unwrap_or("").contains(field);
        assert!(named, "{config}: the error names {field}: {resp}");
    }
    assert_eq!(api.count("run").await, 0, "no run was queued");
    assert_eq!(api.count("dataset").await, 1, "only the good dataset was kept");
    assert_eq!(api.stored_files().len(), 1);
}

#[tokio::test]
async fn an_oversized_upload_is_refused_before_it_is_all_sent() {
    const CAP: usize = 1 << 20;
    const TOTAL: usize = 256 << 20;
    let api = Api::start(CAP).await;
    let token = api.team("bulk", false).await;
    // A 256 MiB file streamed in 64 KiB chunks; count how much the client got to send.
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let chunk = bytes::Bytes::from(vec![b'x'; 64 << 10]);
    let stream = futures::stream::iter((0..TOTAL / chunk.len()).map(move |_| {
        counter.fetch_add(chunk.len(), Ordering::Relaxed);
        Ok::<_, std::io::Error>(chunk.clone())
    }));
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream)).file_name("big.jsonl");
    let form = reqwest::multipart::Form::new().text("name", "big").part("file", part);
    let result = api.http.post(format!("{}/datasets", api.base)).bearer_auth(&token).multipart(form).send().await;
    match result {
        Ok(resp) => {
            assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
            let body: Value = resp.json().await.unwrap();
            assert_eq!(error_code(&body), "upload_too_large");
            assert!(body["error"]["message"].as_str().unwrap().contains("1048576") || body.to_string().contains("MiB"), "{body}");
        }
        // The server may close the connection while the client is still sending.
        Err(e) => assert!(e.is_request() || e.is_body(), "unexpected client error: {e}"),
    }
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent < TOTAL / 4, "the server read {sent} bytes of a {TOTAL}-byte upload over a {CAP}-byte cap");
    assert_eq!(api.count("dataset").await, 0);
    assert!(api.stored_files().is_empty(), "no partial file is left");
}

#[tokio::test]
async fn two_hundred_concurrent_uploads_are_each_stored_once() {
    let api = Arc::new(Api::start(1 << 20).await);
    let token = api.team("busy", false).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (api, token) = (api.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let content = sentiment_jsonl(10 + i % 7);
            api.upload(&token, &format!("set-{i}"), "s.jsonl", content.as_bytes(), &[]).await
        }));
    }
    // And 20 racing uploads under one name: exactly one wins, the rest conflict.
    for _ in 0..20 {
        let (api, token) = (api.clone(), token.clone());
        tasks.push(tokio::spawn(async move { api.upload(&token, "contested", "c.jsonl", sentiment_jsonl(12).as_bytes(), &[]).await }));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => conflicts += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, conflicts), (201, 19));
    assert_eq!(api.count("dataset").await, 201);
    assert_eq!(api.stored_files().len(), 201, "one file per stored dataset, none from the losers");
    let (_, list) = api.get(&token, "/datasets").await;
    let rows: i64 = list["datasets"].as_array().unwrap().iter().map(|d| d["row_count"].as_i64().unwrap()).sum();
    let want: i64 = (0..200).map(|i| 10 + i % 7).sum::<i64>() + 12;
    assert_eq!(rows, want, "every upload's rows were counted");
}
