//! Faults with real processes: `rankfit worker` binaries training MiniLM against a real
//! PostgreSQL, killed with SIGKILL, stopped with SIGTERM, or cut off by a PostgreSQL
//! restart. In every case the run finishes exactly once, resumes where it left off, and
//! its metric series has every step once.
//!
//! Needs the MiniLM asset (`rankfit assets fetch`; fetched here when missing).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rankfit_server::{AppState, ServerConfig};
use rankfit_store::cluster::ManagedCluster;
use rankfit_store::testing::TestDb;
use rankfit_store::{events, runs, teams, ArtifactStore, Pool};
use serde_json::{json, Value};
use uuid::Uuid;

const STEPS: u64 = 40;
const CHECKPOINT_EVERY: u64 = 8;

fn assets_dir() -> PathBuf {
    let dir = std::path::absolute(rankfit_train::assets::workspace_assets_dir(env!("CARGO_MANIFEST_DIR"))).unwrap();
    rankfit_train::assets::ensure_minilm(&dir).expect("MiniLM (run `rankfit assets fetch`)");
    dir
}

/// Server in this process; workers are `rankfit worker` processes sharing its database and
/// artifact store (a directory), each with its own work dir, as on separate machines.
struct Platform {
    pool: Pool,
    db_url: String,
    dir: tempfile::TempDir,
    base: String,
    token: String,
    http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Platform {
    async fn start(pool: Pool, db_url: String) -> Platform {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().join("artifacts").to_str().unwrap()).unwrap();
        let state = AppState::new(pool.clone(), store, ServerConfig::default()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(rankfit_server::serve(listener, state, async move {
            let _ = rx.await;
        }));
        let team = teams::create_team(&pool, "faults", false).await.unwrap();
        let token = teams::issue_token(&pool, team.id, "faults").await.unwrap().secret;
        Platform { pool, db_url, dir, base, token, http: reqwest::Client::new(), _stop: tx }
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Value {
        let resp = req.bearer_auth(&self.token).send().await.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{status}: {body}");
        body
    }

    /// Uploads a small sentiment dataset and queues an AdaLoRA run on it.
    async fn queue_run(&self, steps: u64, checkpoint_every: u64) -> Uuid {
        let rows: String = (0..160)
            .map(|i| {
                let (text, label) = if i % 2 == 0 {
                    (format!("a wonderful, moving and beautiful film {i}"), "positive")
                } else {
                    (format!("a dull, tiresome and awful film {i}"), "negative")
                };
                json!({"text": text, "label": label}).to_string() + "\n"
            })
            .collect();
        let form = reqwest::multipart::Form::new()
            .text("name", "sentiment")
            .part("file", reqwest::multipart::Part::bytes(rows.into_bytes()).file_name("s.jsonl"));
        let ds = self.call(self.http.post(format!("{}/datasets", self.base)).multipart(form)).await;
        let req = json!({
            "dataset_id": ds["dataset"]["id"], "method": "adalora", "budget": 2, "seed": 5,
            "method_config": {"init_r": 4},
            "training": {"max_steps": steps, "batch_size": 8, "max_seq_len": 32, "checkpoint_every": checkpoint_every, "eval_every": 0},
        });
        let run = self.call(self.http.post(format!("{}/runs", self.base)).json(&req)).await;
        run["run"]["id"].as_str().unwrap().parse().unwrap()
    }

    fn spawn_worker(&self, name: &str, lease_secs: u64) -> Child {
        let data_dir = self.dir.path().join(name);
        std::fs::create_dir_all(&data_dir).unwrap();
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        Command::new(env!("CARGO_BIN_EXE_rankfit"))
            .args(["worker", "--lease-secs", &lease_secs.to_string()])
            .env("DATABASE_URL", &self.db_url)
            .env("RANKFIT_ARTIFACTS", self.dir.path().join("artifacts"))
            .env("RANKFIT_DATA_DIR", &data_dir)
            .env("RANKFIT_ASSETS_DIR", assets_dir())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start `rankfit worker`")
    }

    fn worker_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    async fn events(&self, run: Uuid) -> Vec<(String, Value)> {
        events::since(&self.pool, run, 0, 100_000).await.unwrap().into_iter().map(|e| (e.kind, e.data.0)).collect()
    }

    /// Steps of the checkpoints uploaded so far.
    async fn checkpoints(&self, run: Uuid) -> Vec<u64> {
        self.events(run).await.iter().filter(|(k, _)| k == "checkpoint").map(|(_, d)| d["step"].as_u64().unwrap()).collect()
    }

    /// Steps with a recorded train loss, each with how often it was recorded.
    async fn loss_steps(&self, run: Uuid) -> BTreeMap<i64, usize> {
        let mut steps = BTreeMap::new();
        for m in runs::metrics(&self.pool, run).await.unwrap() {
            if m.split == "train" && m.name == "loss" {
                *steps.entry(m.step).or_insert(0) += 1;
            }
        }
        steps
    }

    /// Waits until `cond` holds; on timeout fails with the log of worker `worker`.
    async fn wait_until<F: std::future::Future<Output = bool>>(&self, what: &str, worker: &str, mut cond: impl FnMut() -> F) {
        let started = Instant::now();
        while !cond().await {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "timed out waiting until {what}; worker log:\n{}",
                self.worker_log(worker)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_for_terminal(&self, run: Uuid, within: Duration) -> runs::RunRow {
        let started = Instant::now();
        loop {
            let row = runs::get_any(&self.pool, run).await.unwrap();
            if matches!(row.status.as_str(), "succeeded" | "failed" | "cancelled") {
                return row;
            }
            assert!(started.elapsed() < within, "run still {} after {within:?}", row.status);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The step the trainer said it resumed from, per attempt that resumed.
    async fn resumed_from(&self, run: Uuid) -> Vec<u64> {
        self.events(run)
            .await
            .iter()
            .filter_map(|(k, d)| {
                let msg = d["message"].as_str()?;
                let rest = msg.strip_prefix("resumed from the checkpoint at step ")?;
                (k == "log").then(|| rest.split_whitespace().next().unwrap().parse().unwrap())
            })
            .collect()
    }

    /// Every train step 1..=STEPS has its loss exactly once, and the run's artifacts exist.
    async fn assert_complete(&self, run: Uuid, steps: u64) {
        let got = self.loss_steps(run).await;
        let want: BTreeMap<i64, usize> = (1..=steps as i64).map(|s| (s, 1)).collect();
        assert_eq!(got, want, "train loss recorded once for every step");
        let kinds: Vec<String> = rankfit_store::artifacts::list(&self.pool, run).await.unwrap().into_iter().map(|a| a.kind).collect();
        assert!(kinds.iter().any(|k| k == "adapter_peft"), "artifacts: {kinds:?}");
        let statuses: Vec<String> =
            self.events(run).await.iter().filter(|(k, _)| k == "status").map(|(_, d)| d["status"].as_str().unwrap().to_string()).collect();
        assert_eq!(statuses.iter().filter(|s| *s == "succeeded").count(), 1, "finished once: {statuses:?}");
        // Never two attempts at once: every `running` is followed by `queued` or the end.
        for w in statuses.windows(2) {
            assert!(!(w[0] == "running" && w[1] == "running"), "two attempts overlapped: {statuses:?}");
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} {}", child.id());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < within, "worker {} did not exit within {within:?}", child.id());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_is_replaced_and_the_run_resumes_from_its_checkpoint() {
    let db = TestDb::new().await;
    let p = Platform::start(db.pool.clone(), db.url.clone()).await;
    let run = p.queue_run(STEPS, CHECKPOINT_EVERY).await;
    let mut first = p.spawn_worker("first", 3);
    p.wait_until("the first checkpoint is uploaded", "first", || async { !p.checkpoints(run).await.is_empty() }).await;
    first.kill().unwrap(); // SIGKILL: no clean-up of any kind
    first.wait().unwrap();
    let uploaded = *p.checkpoints(run).await.iter().max().unwrap();
    let recorded_before = p.loss_steps(run).await.keys().max().copied().unwrap_or(0);
    assert_eq!(runs::get_any(&p.pool, run).await.unwrap().status, "running", "the dead worker still holds the lease");

    let mut second = p.spawn_worker("second", 3);
    let row = p.wait_for_terminal(run, Duration::from_secs(600)).await;
    assert_eq!(row.status, "succeeded", "error: {:?}\n{}", row.error, p.worker_log("second"));
    assert_eq!(row.attempts, 2, "one attempt killed, one finished");
    let resumed = p.resumed_from(run).await;
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert!(resumed[0] >= uploaded && resumed[0] > 0, "resumed at {} (checkpoint {uploaded})", resumed[0]);
    eprintln!("killed after step {recorded_before}; checkpoint at {uploaded}; resumed at {}", resumed[0]);
    p.assert_complete(run, STEPS).await;
    signal(&second, "-TERM");
    assert!(wait_exit(&mut second, Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_checkpoints_releases_and_the_next_worker_resumes_at_that_step() {
    let db = TestDb::new().await;
    let p = Platform::start(db.pool.clone(), db.url.clone()).await;
    // No periodic checkpoints at all: whatever is resumed comes from the shutdown.
    let run = p.queue_run(STEPS, 1000).await;
    let mut first = p.spawn_worker("first", 10);
    p.wait_until("a few steps are trained", "first", || async { p.loss_steps(run).await.len() >= 5 }).await;
    signal(&first, "-TERM");
    let status = wait_exit(&mut first, Duration::from_secs(60));
    assert!(status.success(), "worker exit {status}\n{}", p.worker_log("first"));
    let row = runs::get_any(&p.pool, run).await.unwrap();
    assert_eq!(row.status, "queued", "released back to the queue");
    assert_eq!(row.lease_owner, None);
    let saved = p.checkpoints(run).await;
    let last_step = *p.loss_steps(run).await.keys().max().unwrap() as u64;
    assert_eq!(saved, vec![last_step], "one checkpoint, at the step the worker stopped");

    let mut second = p.spawn_worker("second", 10);
    let row = p.wait_for_terminal(run, Duration::from_secs(600)).await;
    assert_eq!(row.status, "succeeded", "error: {:?}\n{}", row.error, p.worker_log("second"));
    assert_eq!(p.resumed_from(run).await, vec![last_step]);
    p.assert_complete(run, STEPS).await;
    signal(&second, "-TERM");
    assert!(wait_exit(&mut second, Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_mid_run_costs_a_pause_and_loses_nothing() {
    // A private cluster, so that restarting it disturbs no other test.
    let pg_dir = tempfile::tempdir().unwrap();
    let cluster = ManagedCluster::ensure(&pg_dir.path().join("pg")).expect("start a private PostgreSQL");
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&cluster.url("postgres")).await.unwrap();
    sqlx::query("create database faults").execute(&mut admin).await.unwrap();
    sqlx::Connection::close(admin).await.unwrap();
    let url = cluster.url("faults");
    let pool = rankfit_store::connect(&url, 5).await.unwrap();
    let p = Platform::start(pool, url).await;
    let steps = 60;
    let run = p.queue_run(steps, 20).await;
    let mut worker = p.spawn_worker("worker", 30);
    p.wait_until("training is under way", "worker", || async { p.loss_steps(run).await.len() >= 5 }).await;

    let recorded_before = p.loss_steps(run).await.len();
    cluster.stop().unwrap();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let cluster = ManagedCluster::ensure(&pg_dir.path().join("pg")).expect("restart PostgreSQL");
    eprintln!("PostgreSQL was down for {:?}", down.elapsed());

    let row = p.wait_for_terminal(run, Duration::from_secs(600)).await;
    assert_eq!(row.status, "succeeded", "error: {:?}\n{}", row.error, p.worker_log("worker"));
    assert_eq!(row.attempts, 1, "the same attempt carried on");
    p.assert_complete(run, steps).await;
    assert!(recorded_before < steps as usize, "PostgreSQL went down mid-run (after {recorded_before} of {steps} steps)");
    // The server reconnected too.
    let body = p.call(p.http.get(format!("{}/runs/{run}", p.base))).await;
    assert_eq!(body["run"]["status"], "succeeded");
    assert!(worker.try_wait().unwrap().is_none(), "the worker is still up");
    signal(&worker, "-TERM");
    assert!(wait_exit(&mut worker, Duration::from_secs(30)).success());
    p.pool.close().await;
    cluster.stop().unwrap();
}
