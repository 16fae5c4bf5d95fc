//! `rankfit` as a REST client of a rankfit server: `login`, `datasets`, `runs` and
//! `studies` commands. The server URL and token come from `--url`/`--token`, the
//! `RANKFIT_URL`/`RANKFIT_TOKEN` environment variables, or the config file `rankfit login`
//! writes, in that order.

pub mod datasets;
pub mod experiment;
pub mod fleet;
pub mod output;
pub mod runs;
pub mod sse;
pub mod studies;

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the server is and who is asking.
#[derive(Args, Clone, Debug, Default)]
pub struct Connection {
    /// Server URL, e.g. http://127.0.0.1:8080 (the API's /api/v1 is added when missing).
    #[arg(long, env = "RANKFIT_URL", global = true)]
    pub url: Option<String>,
    /// API token of your team.
    #[arg(long, env = "RANKFIT_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON (the API's own bodies) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// What `rankfit login` saves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SavedLogin {
    pub url: String,
    pub token: String,
}

/// `$RANKFIT_CONFIG`, else `$XDG_CONFIG_HOME/rankfit/config.json`, else
/// `~/.config/rankfit/config.json`.
pub fn config_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("RANKFIT_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set: pass --url and --token")?).join(".config"),
    };
    Ok(base.join("rankfit").join("config.json"))
}

fn read_saved() -> anyhow::Result<Option<SavedLogin>> {
    let path = config_path()?;
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("{} is not a rankfit login file", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The API root for a server URL: `http://host:port/api/v1`.
pub fn api_root(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/api/v1") {
        url.to_string()
    } else {
        format!("{url}/api/v1")
    }
}

/// An error body from the API (`{"error": {code, message, details}}`).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status.as_u16(), self.code, self.message)?;
        if let Some(errors) = self.details.as_ref().and_then(|d| d.get("errors")).and_then(Value::as_array) {
            for e in errors.iter().take(20) {
                // Line 0 is the file as a whole.
                let line = e.get("line").and_then(Value::as_u64).filter(|l| *l > 0).map(|l| format!("line {l}: ")).unwrap_or_default();
                write!(f, "\n  {line}{}", e.get("message").and_then(Value::as_str).unwrap_or_default())?;
            }
            if errors.len() > 20 {
                write!(f, "\n  ... and {} more", errors.len() - 20)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// The offending field of a validation error, if the server named one.
    pub fn field(&self) -> Option<&str> {
        self.details.as_ref()?.get("field")?.as_str()
    }
}

/// An authenticated client of one server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    root: String,
    token: String,
    pub json: bool,
}

impl Client {
    pub fn new(url: &str, token: &str, json: bool) -> Self {
        Client { http: reqwest::Client::new(), root: api_root(url), token: token.to_string(), json }
    }

    /// From flags and environment, else the saved login.
    pub fn from_connection(c: &Connection) -> anyhow::Result<Self> {
        let saved = if c.url.is_none() || c.token.is_none() { read_saved()? } else { None };
        let url = c.url.clone().or_else(|| saved.as_ref().map(|s| s.url.clone()));
        let token = c.token.clone().or_else(|| saved.as_ref().map(|s| s.token.clone()));
        match (url, token) {
            (Some(url), Some(token)) => Ok(Client::new(&url, &token, c.json)),
            (None, _) => bail!("which server? pass --url, set RANKFIT_URL, or run `rankfit login --url URL --token TOKEN`"),
            (_, None) => bail!("no API token: pass --token, set RANKFIT_TOKEN, or run `rankfit login`"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(&self.token)
    }

    /// Sends and returns the response when it succeeded, else the API's error.
    pub async fn send(&self, req: RequestBuilder) -> anyhow::Result<Response> {
        let resp = req.send().await.map_err(|e| anyhow!("cannot reach {}: {e}", self.root))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(api_error(resp).await.into())
    }

    /// Sends and parses a JSON body.
    pub async fn call(&self, req: RequestBuilder) -> anyhow::Result<Value> {
        let resp = self.send(req).await?;
        resp.json().await.context("the server's answer is not JSON")
    }

    /// Sends, then prints the answer: the API's JSON with `--json`, else as `render` shows it.
    pub async fn present(&self, req: RequestBuilder, render: impl FnOnce(&Value)) -> anyhow::Result<Value> {
        let body = self.call(req).await?;
        if self.json {
            output::print_json(&body);
        } else {
            render(&body);
        }
        Ok(body)
    }
}

/// The elements of the array `body[key]` (none when it is absent).
pub fn items<'a>(body: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    body[key].as_array().into_iter().flatten()
}

async fn api_error(resp: Response) -> ApiError {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let e = &body["error"];
    ApiError {
        status,
        code: e["code"].as_str().unwrap_or("error").to_string(),
        message: e["message"].as_str().map(str::to_string).unwrap_or_else(|| text.chars().take(500).collect()),
        details: e.get("details").cloned(),
    }
}

/// `rankfit login`: checks the token against the server (`GET /me`) and saves both.
pub async fn login(c: &Connection) -> anyhow::Result<()> {
    let url = c.url.clone().context("pass --url (or set RANKFIT_URL)")?;
    let token = c.token.clone().context("pass --token (or set RANKFIT_TOKEN)")?;
    let client = Client::new(&url, &token, c.json);
    let me = client.call(client.get("/me")).await?;
    let path = config_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let body = serde_json::to_vec_pretty(&SavedLogin { url, token })?;
    write_private(&path, &body).with_context(|| format!("cannot write {}", path.display()))?;
    println!("logged in as team {} ({}); saved to {}", output::cell(&me["team"]["name"]), output::cell(&me["team"]["id"]), path.display());
    Ok(())
}

/// Writes a file only its owner can read (it holds a token).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)
}

/// Resolves a dataset given by id or by name among the team's and the public datasets.
pub async fn dataset_id(client: &Client, name_or_id: &str) -> anyhow::Result<uuid::Uuid> {
    if let Ok(id) = uuid::Uuid::parse_str(name_or_id) {
        return Ok(id);
    }
    let list = client.call(client.get("/datasets")).await?;
    let matches: Vec<&Value> =
        list["datasets"].as_array().into_iter().flatten().filter(|d| d["name"].as_str() == Some(name_or_id)).collect();
    match matches.as_slice() {
        [] => bail!("no dataset named {name_or_id:?}: `rankfit datasets list` shows yours and the public ones"),
        // A team dataset shadows a public one of the same name (the list puts the team's first).
        [first, ..] => Ok(uuid::Uuid::parse_str(first["id"].as_str().unwrap_or_default())?),
    }
}
