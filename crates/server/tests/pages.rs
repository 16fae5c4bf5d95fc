//! The HTML pages end to end: sign-in, sessions, CSRF, every page rendering, and team
//! isolation. A real server on a loopback port, a real PostgreSQL.

mod common;

use common::TestServer;
use rankfit_store::teams;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Site {
    base: String,
    http: reqwest::Client,
    server: TestServer,
}

async fn start() -> Site {
    let server = TestServer::start(1 << 20).await;
    // Redirects are asserted, not followed.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Site { base: server.root.clone(), http, server }
}

/// `name=value` of a Set-Cookie header named `name`, with the whole header line.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<(String, String)> {
    resp.headers().get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
        let first = line.split(';').next()?.trim();
        let (k, v) = first.split_once('=')?;
        (k == name).then(|| (v.to_string(), line.to_string()))
    })
}

/// The value of the first `<input ... name="csrf" value="...">` of a page.
fn csrf_field(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("page has a csrf field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

struct Browser {
    cookie: String,
    csrf: String,
}

impl Site {
    async fn team(&self, name: &str) -> String {
        let team = teams::create_team(&self.server.db.pool, name, false).await.unwrap();
        teams::issue_token(&self.server.db.pool, team.id, "test").await.unwrap().secret
    }

    /// Loads the sign-in form: (sign-in cookie, form csrf).
    async fn sign_in_form(&self) -> (String, String) {
        let resp = self.http.get(format!("{}/sign-in", self.base)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let (cookie, _) = set_cookie(&resp, "rankfit_signin").expect("sign-in cookie");
        let html = resp.text().await.unwrap();
        (cookie, csrf_field(&html))
    }

    async fn post_sign_in(&self, signin_cookie: Option<&str>, csrf: &str, token: &str) -> reqwest::Response {
        let mut req = self.http.post(format!("{}/sign-in", self.base)).form(&[("token", token), ("csrf", csrf), ("next", "/runs")]);
        if let Some(c) = signin_cookie {
            req = req.header(COOKIE, format!("rankfit_signin={c}"));
        }
        req.send().await.unwrap()
    }

    async fn sign_in(&self, token: &str) -> Browser {
        let (c, csrf) = self.sign_in_form().await;
        let resp = self.post_sign_in(Some(&c), &csrf, token).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let (session, _) = set_cookie(&resp, "rankfit_session").expect("session cookie");
        let cookie = format!("rankfit_session={session}");
        let page = self.http.get(format!("{}/", self.base)).header(COOKIE, &cookie).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        Browser { cookie, csrf: csrf_field(&html) }
    }

    async fn page(&self, b: Option<&Browser>, path: &str) -> (StatusCode, String, Option<String>) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(b) = b {
            req = req.header(COOKIE, &b.cookie);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let location = resp.headers().get(LOCATION).map(|v| v.to_str().unwrap().to_string());
        (status, resp.text().await.unwrap(), location)
    }

    async fn upload(&self, token: &str, name: &str) -> Value {
        let rows: String = (0..30)
            .map(|i| json!({"text": format!("sample sentence {i}"), "label": if i % 2 == 0 { "pos" } else { "neg" }}).to_string() + "\n")
            .collect();
        let form = reqwest::multipart::Form::new()
            .text("name", name.to_string())
            .part("file", reqwest::multipart::Part::bytes(rows.into_bytes()).file_name("d.jsonl"));
        let resp = self.http.post(format!("{}/api/v1/datasets", self.base)).bearer_auth(token).multipart(form).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json::<Value>().await.unwrap()["dataset"].clone()
    }

    async fn create_run(&self, token: &str, dataset_id: &str, method: &str) -> String {
        let resp = self
            .http
            .post(format!("{}/api/v1/runs", self.base))
            .bearer_auth(token)
            .json(&json!({"dataset_id": dataset_id, "method": method, "budget": 4}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json::<Value>().await.unwrap()["run"]["id"].as_str().unwrap().to_string()
    }

    /// Marks a run succeeded with an evaluation, a summary and a rank snapshot, as a worker would.
    async fn finish_run(&self, run_id: &str, accuracy: f64) {
        let id: uuid::Uuid = run_id.parse().unwrap();
        sqlx::query(
            "update run set status = 'succeeded', started_at = now() - interval '90 seconds', finished_at = now(),
             summary = $2 where id = $1",
        )
        .bind(id)
        .bind(sqlx::types::Json(json!({"trainable_params": {"start": 1000, "peak": 1500, "end": 800}, "wall_seconds": 90.5})))
        .execute(&self.server.db.pool)
        .await
        .unwrap();
        sqlx::query("insert into evaluation (run_id, split, metrics) values ($1, 'test', $2)")
            .bind(id)
            .bind(sqlx::types::Json(json!({"accuracy": accuracy, "f1": accuracy, "mcc": 0.5})))
            .execute(&self.server.db.pool)
            .await
            .unwrap();
        sqlx::query("insert into rank_snapshot (run_id, step, budget, ranks) values ($1, 10, 16, $2)")
            .bind(id)
            .bind(sqlx::types::Json(json!({"layer.0.query": 6, "layer.0.value": 2})))
            .execute(&self.server.db.pool)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn sign_in_rejects_bad_tokens_and_sets_a_strict_http_only_cookie() {
    let site = start().await;
    let token = site.team("web").await;

    // Bad token: the form comes back with the error shown, no session cookie.
    let (c, csrf) = site.sign_in_form().await;
    let resp = site.post_sign_in(Some(&c), &csrf, "rf_not_a_real_token").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&resp, "rankfit_session").is_none());
    let html = resp.text().await.unwrap();
    assert!(html.contains("id=\"sign-in-error\""), "{html}");
    assert!(html.contains("unknown or has been revoked"));

    // The sign-in form itself is CSRF-protected (double-submit cookie).
    let resp = site.post_sign_in(None, &csrf, &token).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&resp, "rankfit_session").is_none());

    // Good token: redirect to `next` with an HttpOnly, SameSite=Strict session cookie.
    let (c, csrf) = site.sign_in_form().await;
    let resp = site.post_sign_in(Some(&c), &csrf, &token).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/runs");
    let (secret, line) = set_cookie(&resp, "rankfit_session").expect("session cookie");
    assert!(secret.len() >= 32);
    assert!(line.contains("HttpOnly"), "{line}");
    assert!(line.contains("SameSite=Strict"), "{line}");
    assert!(line.contains("Path=/"), "{line}");
    // Only the hash of the secret is stored.
    let stored: i64 = sqlx::query_scalar("select count(*) from web_session where id = $1")
        .bind(teams::hash_token(&secret))
        .fetch_one(&site.server.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);
    let cookie = format!("rankfit_session={secret}");
    let (status, html, _) = site.page(Some(&Browser { cookie: cookie.clone(), csrf: String::new() }), "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("web"), "team name shown");

    // The cookie authenticates the JSON API too (GET needs no CSRF header).
    let me = site.http.get(format!("{}/api/v1/me", site.base)).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    // An open redirect through `next` is refused.
    let (c, csrf) = site.sign_in_form().await;
    let resp = site
        .http
        .post(format!("{}/sign-in", site.base))
        .header(COOKIE, format!("rankfit_signin={c}"))
        .form(&[("token", token.as_str()), ("csrf", csrf.as_str()), ("next", "//evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()[LOCATION], "/");
}

#[tokio::test]
async fn state_changing_requests_without_the_csrf_token_are_refused() {
    let site = start().await;
    let token = site.team("csrf").await;
    let b = site.sign_in(&token).await;
    let ds = site.upload(&token, "d").await;
    let ds_id = ds["id"].as_str().unwrap();
    let run_id = site.create_run(&token, ds_id, "lora").await;

    // Page form POSTs: no token or a wrong token -> 403, nothing changes.
    for form in [vec![], vec![("csrf", "wrong")]] {
        let resp =
            site.http.post(format!("{}/runs/{run_id}/cancel", site.base)).header(COOKIE, &b.cookie).form(&form).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(resp.text().await.unwrap().contains("<!doctype html>"), "friendly HTML error page");
        let resp = site.http.post(format!("{}/sign-out", site.base)).header(COOKIE, &b.cookie).form(&form).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    let status: String =
        sqlx::query_scalar("select status from run where id = $1::uuid").bind(&run_id).fetch_one(&site.server.db.pool).await.unwrap();
    assert_eq!(status, "queued");

    // Cookie-authenticated API writes need the X-CSRF-Token header; errors stay JSON.
    let body = json!({"dataset_id": ds_id, "method": "adalora", "budget": 4});
    let resp = site.http.post(format!("{}/api/v1/runs", site.base)).header(COOKIE, &b.cookie).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "forbidden");
    let resp = site
        .http
        .post(format!("{}/api/v1/runs", site.base))
        .header(COOKIE, &b.cookie)
        .header("x-csrf-token", "nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = site
        .http
        .post(format!("{}/api/v1/runs", site.base))
        .header(COOKIE, &b.cookie)
        .header("x-csrf-token", &b.csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Multipart upload with the cookie + header (what the upload page's XHR sends).
    let form = reqwest::multipart::Form::new().text("name", "via-cookie").part(
        "file",
        reqwest::multipart::Part::bytes(b"{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"y\"}\n".to_vec())
            .file_name("x.jsonl"),
    );
    let resp = site.http.post(format!("{}/api/v1/datasets", site.base)).header(COOKIE, &b.cookie).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let form = reqwest::multipart::Form::new().text("name", "via-cookie").part(
        "file",
        reqwest::multipart::Part::bytes(b"{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"y\"}\n".to_vec())
            .file_name("x.jsonl"),
    );
    let resp = site
        .http
        .post(format!("{}/api/v1/datasets", site.base))
        .header(COOKIE, &b.cookie)
        .header("x-csrf-token", &b.csrf)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Bearer behaviour is unchanged: a bearer request needs no CSRF header, and a bad
    // bearer token is not rescued by a valid cookie.
    let resp = site.http.post(format!("{}/api/v1/runs/{run_id}/cancel", site.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = site.http.get(format!("{}/api/v1/me", site.base)).bearer_auth("rf_bad").header(COOKIE, &b.cookie).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // With the token, cancel and sign-out work; the session is gone afterwards.
    let run2 = site.create_run(&token, ds_id, "lora").await;
    let resp = site
        .http
        .post(format!("{}/runs/{run2}/cancel", site.base))
        .header(COOKIE, &b.cookie)
        .form(&[("csrf", &b.csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let status: String =
        sqlx::query_scalar("select status from run where id = $1::uuid").bind(&run2).fetch_one(&site.server.db.pool).await.unwrap();
    assert_eq!(status, "cancelled");
    let resp = site.http.post(format!("{}/sign-out", site.base)).header(COOKIE, &b.cookie).form(&[("csrf", &b.csrf)]).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, line) = set_cookie(&resp, "rankfit_session").expect("cookie cleared");
    assert!(line.contains("Max-Age=0"));
    let (status, _, location) = site.page(Some(&b), "/runs").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.unwrap().starts_with("/sign-in"));
    let me = site.http.get(format!("{}/api/v1/me", site.base)).header(COOKIE, &b.cookie).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_page_renders_for_a_signed_in_team_and_redirects_otherwise() {
    let site = start().await;
    let token = site.team("pages").await;
    let b = site.sign_in(&token).await;
    let ds = site.upload(&token, "sentiment").await;
    let ds_id = ds["id"].as_str().unwrap().to_string();
    let r1 = site.create_run(&token, &ds_id, "adalora").await;
    let r2 = site.create_run(&token, &ds_id, "lora").await;
    let r3 = site.create_run(&token, &ds_id, "rolora").await;
    site.finish_run(&r1, 0.91).await;
    site.finish_run(&r2, 0.85).await;
    sqlx::query("update run set status = 'failed', finished_at = now(), error = 'method not available: rolora' where id = $1::uuid")
        .bind(&r3)
        .execute(&site.server.db.pool)
        .await
        .unwrap();

    let pages = [
        "/".to_string(),
        "/datasets".into(),
        format!("/datasets/{ds_id}"),
        "/runs".into(),
        "/runs?status=succeeded&method=".into(),
        "/runs/new".into(),
        format!("/runs/new?dataset_id={ds_id}"),
        format!("/runs/{r1}"),
        format!("/runs/{r3}"),
        "/leaderboard".into(),
        format!("/leaderboard?dataset_id={ds_id}&budget=4&method=&base_model=&metric=f1&split=test"),
        "/compare".into(),
        format!("/compare?run={r1}&run={r2}&run={r3}"),
    ];
    for path in &pages {
        let (status, html, _) = site.page(Some(&b), path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        assert!(html.contains("<h1"), "{path} has a heading");
        assert!(html.contains(&b.csrf), "{path} carries the CSRF token");
        assert!(html.len() < 100 * 1024, "{path} is {} bytes", html.len());

        let (status, _, location) = site.page(None, path).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path} without a session");
        assert!(location.as_deref().unwrap_or("").starts_with("/sign-in"), "{path} -> {location:?}");
    }
    // Content checks on a few pages.
    let (_, html, _) = site.page(Some(&b), &format!("/datasets/{ds_id}")).await;
    assert!(html.contains("Label distribution") && html.contains("pos") && html.contains("sample sentence"));
    let (_, html, _) = site.page(Some(&b), &format!("/runs/{r3}")).await;
    assert!(html.contains("method not available: rolora"), "the failure is shown");
    let (_, html, _) = site.page(Some(&b), &format!("/leaderboard?dataset_id={ds_id}")).await;
    assert!(html.contains("91.00") && html.contains("85.00"), "leaderboard cells (accuracy in points)");
    assert!(html.find("91.00").unwrap() < html.find("85.00").unwrap(), "higher mean first");
    assert!(html.contains("test split") && !html.contains("Best succeeded run"), "no best-by-test view");
    let (_, html, _) = site.page(Some(&b), &format!("/leaderboard?dataset_id={ds_id}&method=lora")).await;
    assert!(!html.contains("91.00") && html.contains("85.00"), "method filter");
    let (_, html, _) = site.page(Some(&b), "/runs?status=failed").await;
    assert!(html.contains(&r3) && !html.contains(&r1), "status filter");
    let (_, html, _) = site.page(Some(&b), &format!("/compare?run={r1}&run={r2}")).await;
    assert!(html.contains("1,000 / 1,500 / 800") && html.contains("1 min 30 s") && html.contains("layer.0.query"));

    // The redirect remembers where to come back to.
    let (_, _, location) = site.page(None, &format!("/runs/{r1}")).await;
    assert_eq!(location.unwrap(), format!("/sign-in?next=/runs/{r1}"));
    // Unknown things get the friendly HTML error page; the API keeps JSON errors.
    let (status, html, _) = site.page(Some(&b), "/runs/00000000-0000-0000-0000-000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("<!doctype html>") && html.contains("Not found"));
    let (status, html, _) = site.page(Some(&b), "/no/such/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("Page not found"));
    let resp = site.http.get(format!("{}/api/v1/runs/{r1}/nope", site.base)).header(COOKIE, &b.cookie).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "not_found");
    // Static assets are served.
    for asset in ["/static/app.js", "/static/style.css"] {
        let resp = site.http.get(format!("{}{asset}", site.base)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
    }
}

#[tokio::test]
async fn operators_see_the_fleet_and_the_queue_on_the_workers_page() {
    let site = start().await;
    let pool = &site.server.db.pool;
    let admin_team = teams::create_team(pool, "operators", true).await.unwrap();
    let admin = teams::issue_token(pool, admin_team.id, "test").await.unwrap().secret;
    let user = site.team("researchers").await;
    let ds = site.upload(&user, "sentiment").await;
    let queued = site.create_run(&user, ds["id"].as_str().unwrap(), "adalora").await;
    let w = rankfit_store::workers::NewWorker {
        name: "gpu-box:41".into(),
        host: "gpu-box".into(),
        pid: 41,
        device: "cuda:0".into(),
        features: vec!["cuda".into()],
        version: "0.1.0".into(),
        lease_secs: 30,
    };
    rankfit_store::workers::register(pool, &w).await.unwrap();

    let ops = site.sign_in(&admin).await;
    let (status, html, _) = site.page(Some(&ops), "/workers").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("href=\"/workers\""), "operators get the nav link");
    assert!(html.contains("gpu-box:41") && html.contains("cuda:0 (cuda)") && html.contains("worker-alive"), "{html}");
    assert!(html.contains(&queued[..8]) && html.contains("researchers") && html.contains("adalora · sentiment"), "the queue: {html}");
    assert!(html.contains("http-equiv=\"refresh\""), "the page refreshes itself");

    let b = site.sign_in(&user).await;
    let (status, html, _) = site.page(Some(&b), "/workers").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("admin team"), "{html}");
    let (_, html, _) = site.page(Some(&b), "/").await;
    assert!(!html.contains("href=\"/workers\""), "no nav link for other teams");
}

#[tokio::test]
async fn a_session_never_shows_another_teams_runs_or_datasets() {
    let site = start().await;
    let token_a = site.team("team-a").await;
    let token_b = site.team("team-b").await;
    let a = site.sign_in(&token_a).await;
    let ds_a = site.upload(&token_a, "shared-name").await["id"].as_str().unwrap().to_string();
    let ds_b = site.upload(&token_b, "secret-b-data").await["id"].as_str().unwrap().to_string();
    let run_a = site.create_run(&token_a, &ds_a, "lora").await;
    let run_b1 = site.create_run(&token_b, &ds_b, "adalora").await;
    let run_b2 = site.create_run(&token_b, &ds_b, "lora").await;
    site.finish_run(&run_b1, 0.99).await;
    site.finish_run(&run_b2, 0.98).await;

    // Lists never mention B's things.
    for path in ["/", "/datasets", "/runs", "/runs?status=succeeded", "/runs/new", "/leaderboard", "/compare"] {
        let (status, html, _) = site.page(Some(&a), path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        for secret in [&run_b1, &run_b2, &ds_b, &"secret-b-data".to_string()] {
            assert!(!html.contains(secret.as_str()), "{path} leaks {secret}");
        }
    }
    let (_, html, _) = site.page(Some(&a), "/runs").await;
    assert!(html.contains(&run_a));
    // Direct addresses of B's things are 404 pages.
    for path in [
        format!("/runs/{run_b1}"),
        format!("/datasets/{ds_b}"),
        format!("/leaderboard?dataset_id={ds_b}"),
        format!("/compare?run={run_b1}&run={run_b2}"),
        format!("/compare?run={run_a}&run={run_b1}"),
        format!("/runs/new?dataset_id={ds_b}"),
    ] {
        let (status, html, _) = site.page(Some(&a), &path).await;
        if path.starts_with("/runs/new") {
            // The launch form ignores a foreign dataset id (it only lists A's datasets).
            assert_eq!(status, StatusCode::OK);
            assert!(!html.contains("secret-b-data"));
            continue;
        }
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!html.contains("0.99"), "{path}");
    }
    // Cancelling B's run through A's session does nothing.
    let resp = site
        .http
        .post(format!("{}/runs/{run_b1}/cancel", site.base))
        .header(COOKIE, &a.cookie)
        .form(&[("csrf", &a.csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // The API with A's cookie: B's run, events, rank map and adapter are 404.
    for path in ["", "/events", "/rank-map", "/metrics", "/adapter?format=peft"] {
        let resp = site.http.get(format!("{}/api/v1/runs/{run_b1}{path}", site.base)).header(COOKIE, &a.cookie).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

/// A generation run as a worker reports it: progress while it runs (run page and runs
/// list), then its answers in a table (input, reference, generated, ROUGE), its ROUGE
/// settings as run facts, and its estimate next to the actual time.
#[tokio::test]
async fn a_generation_run_shows_progress_then_its_answers_facts_and_estimate() {
    use rankfit_domain::prediction::{Output, Prediction};
    use rankfit_store::{events, queue, studies};
    let site = start().await;
    let token = site.team("gen").await;
    let b = site.sign_in(&token).await;
    let rows: String = (0..12)
        .map(|i| {
            json!({"document": format!("the long document number {i} about rivers"), "summary": format!("rivers {i}")}).to_string() + "\n"
        })
        .collect();
    let form = reqwest::multipart::Form::new()
        .text("name", "xsum-mini")
        .text("task_family", "summarization")
        .part("file", reqwest::multipart::Part::bytes(rows.into_bytes()).file_name("d.jsonl"));
    let resp = site.http.post(format!("{}/api/v1/datasets", site.base)).bearer_auth(&token).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let ds = resp.json::<Value>().await.unwrap()["dataset"]["id"].as_str().unwrap().to_string();
    let resp = site
        .http
        .post(format!("{}/api/v1/runs", site.base))
        .bearer_auth(&token)
        .json(&json!({"dataset_id": ds, "base_model": "smollm2-135m-instruct", "method": "lora", "budget": 4,
                      "training": {"max_steps": 40, "batch_size": 2, "max_seq_len": 128}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let run = resp.json::<Value>().await.unwrap()["run"]["id"].as_str().unwrap().to_string();

    let pool = &site.server.db.pool;
    let lease = queue::claim(pool, "test-worker", std::time::Duration::from_secs(60)).await.unwrap().unwrap();
    let progress = json!({"phase": "training", "step": 10, "total_steps": 40, "elapsed_seconds": 50.0, "eta_seconds": 150.0,
                          "loss": 2.5, "rank_total": 240});
    assert!(events::record_progress(pool, lease.run.id, lease.token, &progress).await.unwrap());
    assert!(!events::record_progress(pool, lease.run.id, uuid::Uuid::new_v4(), &progress).await.unwrap(), "guarded by the lease");
    let (_, html, _) = site.page(Some(&b), &format!("/runs/{run}")).await;
    assert!(html.contains(r#"<progress id="run-progress" max="40" value="10""#), "progress bar: {html}");
    assert!(html.contains("training step 10/40 (25%) · loss 2.5000 · rank 240 · 50s elapsed · ETA 2m 30s"));
    let (_, html, _) = site.page(Some(&b), "/runs").await;
    assert!(html.contains(r#"<progress class="mini" max="40" value="10""#) && html.contains("est. ~"), "runs list progress and estimate");

    let preds: Vec<Prediction> = (0..3u32)
        .map(|i| Prediction {
            index: i,
            predicted: Output::Text { text: format!("generated answer {i}") },
            reference: Output::Text { text: format!("rivers {i}") },
            input: Some(format!("the long document number {i} about rivers")),
            scores: [("rouge1".to_string(), 0.5), ("rougeL".to_string(), 0.25)].into_iter().collect(),
        })
        .collect();
    assert!(studies::record_predictions(pool, lease.run.id, lease.token, "test", &preds).await.unwrap());
    let summary =
        json!({"rouge_stemmer": "porter", "generated_test_examples": 3, "max_new_tokens": 64, "wall_seconds": 200.0, "device": "cpu"});
    assert!(queue::finish(pool, lease.run.id, lease.token, &queue::Outcome::Succeeded { summary }).await.unwrap());

    let (_, html, _) = site.page(Some(&b), &format!("/runs/{run}")).await;
    assert!(html.contains(r#"id="samples-table""#), "samples table");
    for text in ["the long document number 2 about rivers", "generated answer 2", "rivers 2", "0.500", "0.250"] {
        assert!(html.contains(text), "samples table shows {text:?}");
    }
    assert!(
        html.contains("ROUGE stemmer</dt><dd>porter") && html.contains("Generated test answers</dt><dd>3"),
        "ROUGE settings are run facts"
    );
    assert!(html.contains("Estimated time") && html.contains("Actual time</dt><dd>3 min 20 s ("), "estimate vs actual");
    assert!(!html.contains(r#"<progress id="run-progress" max="40""#), "no progress bar once it finished");
    // The predictions download carries the inputs too.
    let resp = site.http.get(format!("{}/api/v1/runs/{run}/predictions?format=jsonl", site.base)).bearer_auth(&token).send().await.unwrap();
    let first: Value = serde_json::from_str(resp.text().await.unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["input"], "the long document number 0 about rivers");
}
