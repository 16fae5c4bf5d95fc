//! A real server on a loopback port over a fresh database of the managed PostgreSQL, for
//! the integration tests of this crate.

#![allow(dead_code)] // each test binary uses a different part of it

pub mod schema;

use std::path::{Path, PathBuf};

use rankfit_server::{AppState, ServerConfig};
use rankfit_store::testing::TestDb;
use rankfit_store::{teams, ArtifactStore};
use reqwest::StatusCode;
use serde_json::{json, Value};

pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub root: String,
    pub db: TestDb,
    pub artifacts_dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestServer {
    pub async fn start(max_upload_bytes: usize) -> TestServer {
        let db = TestDb::new().await;
        let artifacts_dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(artifacts_dir.path().to_str().unwrap()).unwrap();
        let config = ServerConfig { max_upload_bytes, ..Default::default() };
        let state = AppState::new(db.pool.clone(), store, config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let root = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(rankfit_server::serve(listener, state, async move {
            let _ = rx.await;
        }));
        TestServer { root, db, artifacts_dir, _stop: tx }
    }

    /// A new team and one of its token secrets.
    pub async fn team(&self, name: &str, admin: bool) -> String {
        let team = teams::create_team(&self.db.pool, name, admin).await.unwrap();
        teams::issue_token(&self.db.pool, team.id, "test").await.unwrap().secret
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("select count(*) from {table}")).fetch_one(&self.db.pool).await.unwrap()
    }

    /// Every file in the artifact store.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out)
                } else {
                    out.push(p)
                }
            }
        }
        let mut out = Vec::new();
        walk(self.artifacts_dir.path(), &mut out);
        out
    }
}

/// The REST API of a [`TestServer`], with bearer tokens.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub server: TestServer,
}

impl std::ops::Deref for Api {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl Api {
    pub async fn start(max_upload_bytes: usize) -> Api {
        let server = TestServer::start(max_upload_bytes).await;
        Api { base: format!("{}/api/v1", server.root), http: reqwest::Client::new(), server }
    }

    pub async fn upload(&self, token: &str, name: &str, file_name: &str, content: &[u8], fields: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut form = reqwest::multipart::Form::new().text("name", name.to_string());
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        form = form.part("file", reqwest::multipart::Part::bytes(content.to_vec()).file_name(file_name.to_string()));
        let resp = self.http.post(format!("{}/datasets", self.base)).bearer_auth(token).multipart(form).send().await.unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let resp = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self.http.post(format!("{}{path}", self.base)).bearer_auth(token).json(&body).send().await.unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, token: &str, path: &str) -> StatusCode {
        self.http.delete(format!("{}{path}", self.base)).bearer_auth(token).send().await.unwrap().status()
    }
}

/// `rows` lines of a two-label sentiment JSONL file.
pub fn sentiment_jsonl(rows: usize) -> String {
    (0..rows)
        .map(|i| {
            let (text, label) = if i % 2 == 0 {
                (format!("a truly wonderful film, number {i}"), "positive")
            } else {
                (format!("a dull and tiresome film, number {i}"), "negative")
            };
            json!({"text": text, "label": label}).to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}
