//! The worker's lease, cancel, shutdown and recording logic against a real PostgreSQL
//! and a real artifact store. Trainers here have known timing (`PacedTrainer`) so the
//! control flow can be observed; the burn trainer has its own end-to-end tests.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rankfit_domain::fleet::WorkerState;
use rankfit_domain::prediction::{Output, Prediction};
use rankfit_domain::rank::RankMap;
use rankfit_store::queue;
use rankfit_store::runs::{self, NewRun};
use rankfit_store::testing::TestDb;
use rankfit_store::{artifacts, datasets, teams, workers, ArtifactStore, Pool};
use rankfit_train::{ArtifactKind, TrainError, TrainEvent, TrainJob, TrainOutput};
use rankfit_worker::{Trainer, WorkerConfig};
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

/// Emits a loss and a rank map every step, `step_ms` apart, for `steps` steps; then
/// writes an adapter file and reports an evaluation. Honours `cancel` between steps.
struct PacedTrainer {
    steps: u64,
    step_ms: u64,
    progress: Arc<AtomicU64>,
    /// Diverge (a NaN loss) at the end.
    diverge: bool,
}

impl PacedTrainer {
    fn new(steps: u64, step_ms: u64) -> (Arc<Self>, Arc<AtomicU64>) {
        let progress = Arc::new(AtomicU64::new(0));
        (Arc::new(Self { steps, step_ms, progress: progress.clone(), diverge: false }), progress)
    }
}

impl Trainer for PacedTrainer {
    fn train(&self, job: &TrainJob, on_event: &mut dyn FnMut(TrainEvent), cancel: &AtomicBool) -> Result<TrainOutput, TrainError> {
        for step in 1..=self.steps {
            if cancel.load(Ordering::SeqCst) {
                return Err(TrainError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(self.step_ms));
            on_event(TrainEvent::Metric { step, split: "train".into(), name: "loss".into(), value: 1.0 / step as f64 });
            on_event(TrainEvent::Ranks(RankMap {
                step,
                budget: 8,
                modules: vec![("layer.0.query".into(), 4), ("layer.0.value".into(), 4)],
            }));
            on_event(TrainEvent::Progress(rankfit_domain::progress::Progress {
                phase: rankfit_domain::progress::Phase::Training,
                step,
                total_steps: self.steps,
                elapsed_seconds: (step * self.step_ms) as f64 / 1000.0,
                eta_seconds: Some(((self.steps - step) * self.step_ms) as f64 / 1000.0),
                loss: Some(1.0 / step as f64),
                rank_total: Some(8),
                done: None,
                of: None,
            }));
            self.progress.store(step, Ordering::SeqCst);
        }
        if self.diverge {
            return Err(TrainError::NonFiniteLoss { step: self.steps, value: f64::NAN });
        }
        let adapter = job.work_dir.join("adapter");
        std::fs::create_dir_all(&adapter)?;
        std::fs::write(adapter.join("adapter_config.json"), b"{\"peft_type\": \"LORA\"}")?;
        let mut metrics = serde_json::Map::new();
        metrics.insert("accuracy".into(), json!(0.75));
        Ok(TrainOutput {
            evaluations: vec![("test".into(), metrics)],
            artifacts: vec![(ArtifactKind::AdapterPeft, adapter)],
            summary: rankfit_domain::summary::RunSummary {
                trainable_params: Some(rankfit_domain::summary::TrainableParams { start: 10, peak: 10, end: 10 }),
                ..Default::default()
            },
            // 3 of 4 right, as the accuracy says.
            predictions: (0..4u32)
                .map(|i| Prediction {
                    index: i,
                    predicted: Output::Class { index: usize::from(i == 3), label: String::new() },
                    reference: Output::Class { index: 0, label: String::new() },
                    input: Some(format!("example {i}")),
                    scores: [("accuracy".to_string(), f64::from(u8::from(i != 3)))].into_iter().collect(),
                })
                .collect(),
        })
    }
}

struct Fixture {
    db: TestDb,
    store: ArtifactStore,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    art_root: std::path::PathBuf,
    work_root: std::path::PathBuf,
    team: Uuid,
    dataset: Uuid,
}

async fn fixture() -> Fixture {
    let db = TestDb::new().await;
    let art = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(art.path().to_str().unwrap()).unwrap();
    let team = teams::create_team(&db.pool, "workers", false).await.unwrap();
    let rows: String =
        (0..20).map(|i| format!("{{\"text\": \"example number {i}\", \"label\": \"{}\"}}\n", if i % 2 == 0 { "a" } else { "b" })).collect();
    let uri = format!("datasets/{}/d.jsonl", team.id);
    store.put(&uri, bytes::Bytes::from(rows.clone())).await.unwrap();
    let opts = rankfit_domain::dataset::ParseOptions::new(
        rankfit_domain::dataset::DataFormat::Jsonl,
        rankfit_domain::task::TaskFamily::Classification,
    );
    let ds = datasets::insert(
        &db.pool,
        &datasets::NewDataset {
            id: Uuid::new_v4(),
            team_id: Some(team.id),
            name: "d".into(),
            task_family: "classification".into(),
            format: "jsonl".into(),
            parse_options: serde_json::to_value(&opts).unwrap(),
            label_set: json!(["a", "b"]),
            row_count: 20,
            splits: json!({}),
            bytes: rows.len() as i64,
            sha256: rankfit_store::sha256_hex(rows.as_bytes()),
            uri,
            report: json!({}),
            primary_metric: "accuracy".into(),
            benchmark: None,
            suite_id: None,
        },
    )
    .await
    .unwrap();
    let (art_root, work_root) = (art.path().to_path_buf(), work.path().to_path_buf());
    Fixture { db, store, _dirs: (art, work), art_root, work_root, team: team.id, dataset: ds.id }
}

impl Fixture {
    async fn queue(&self) -> Uuid {
        runs::create(
            &self.db.pool,
            &NewRun {
                team_id: self.team,
                dataset_id: self.dataset,
                base_model_id: "all-minilm-l6-v2".into(),
                method: "lora".into(),
                config: json!({"method": {"method": "lora"}}),
                budget: 4,
                seed: 1,
                name: String::new(),
                priority: 0,
                max_attempts: 3,
                continue_from: None,
                estimate: None,
            },
        )
        .await
        .unwrap()
        .id
    }

    fn config(&self, max_runs: Option<usize>) -> WorkerConfig {
        let mut cfg = WorkerConfig::new(self.work_root.join("assets"), self.work_root.clone());
        cfg.lease = Duration::from_millis(900);
        cfg.poll = Duration::from_millis(200);
        cfg.max_runs = max_runs;
        cfg
    }

    fn spawn(&self, trainer: Arc<dyn Trainer>, max_runs: Option<usize>) -> (watch::Sender<bool>, tokio::task::JoinHandle<usize>) {
        let (tx, rx) = watch::channel(false);
        let (pool, store, cfg) = (self.db.pool.clone(), self.store.clone(), self.config(max_runs));
        let handle = tokio::spawn(async move { rankfit_worker::run(pool, store, cfg, trainer, rx).await.unwrap() });
        (tx, handle)
    }
}

async fn wait_for_status(pool: &Pool, run: Uuid, want: &str, within: Duration) -> runs::RunRow {
    let start = Instant::now();
    loop {
        let row = runs::get_any(pool, run).await.unwrap();
        if row.status == want {
            return row;
        }
        assert!(start.elapsed() < within, "run stayed {} (error: {:?}), wanted {want}", row.status, row.error);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_progress(progress: &AtomicU64, at_least: u64) {
    let start = Instant::now();
    while progress.load(Ordering::SeqCst) < at_least {
        assert!(start.elapsed() < Duration::from_secs(20), "training made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_run_is_trained_and_everything_it_reports_is_recorded() {
    let f = fixture().await;
    let run = f.queue().await;
    let (trainer, _) = PacedTrainer::new(5, 10);
    let (_tx, handle) = f.spawn(trainer, Some(1));
    assert_eq!(handle.await.unwrap(), 1);
    let row = wait_for_status(&f.db.pool, run, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(row.summary.0["trainable_params"]["peak"], 10);
    let metrics = runs::metrics(&f.db.pool, run).await.unwrap();
    assert_eq!(metrics.iter().map(|m| m.step).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert_eq!(runs::rank_snapshots(&f.db.pool, run).await.unwrap().len(), 5);
    let evals = runs::evaluations(&f.db.pool, run).await.unwrap();
    assert_eq!(evals[0].metrics.0["accuracy"], 0.75);
    // The test predictions are stored, and the accuracy recomputed from them is the reported one.
    let preds = rankfit_store::studies::predictions(&f.db.pool, run, "test").await.unwrap();
    assert_eq!(preds.len(), 4);
    assert_eq!(preds[3].predicted, Output::Class { index: 1, label: String::new() });
    assert_eq!(preds[3].input.as_deref(), Some("example 3"), "inputs are stored with the predictions");
    // The last progress report is the run's (it was running when it arrived).
    let progress = row.progress.as_ref().expect("a progress report").0.clone();
    assert_eq!((progress["step"].as_u64(), progress["total_steps"].as_u64()), (Some(5), Some(5)));
    assert_eq!(progress["phase"], "training");
    let all: Vec<usize> = (0..preds.len()).collect();
    let acc = rankfit_domain::prediction::metric_on(rankfit_domain::task::TaskFamily::Classification, "accuracy", 2, &preds, &all);
    assert_eq!(acc, Some(0.75));
    let art = artifacts::get(&f.db.pool, run, "adapter_peft").await.unwrap();
    let data = f.store.get(&art.uri).await.unwrap();
    assert_eq!(rankfit_store::sha256_hex(&data), art.sha256);
    assert_eq!(&data[..2], b"PK", "adapter directories are stored zipped");
    // The worker registered, counted its claim and success, and signed off.
    let fleet = workers::list(&f.db.pool, 1).await.unwrap();
    assert_eq!(fleet.len(), 1);
    let w = &fleet[0];
    assert_eq!((w.claims, w.succeeded, w.failed), (1, 1, 0));
    assert_eq!((w.device.as_str(), w.pid), ("cpu", std::process::id() as i32));
    assert!(w.stopped_at.is_some() && w.current_run_id.is_none(), "{w:?}");
}

#[tokio::test]
async fn cancel_stops_a_running_job() {
    let f = fixture().await;
    let run = f.queue().await;
    let (trainer, progress) = PacedTrainer::new(10_000, 20);
    let (_tx, handle) = f.spawn(trainer, Some(1));
    wait_for_progress(&progress, 3).await;
    // While it trains, the fleet view shows the worker alive on this run, its lease live.
    let w = workers::list(&f.db.pool, 1).await.unwrap().remove(0);
    assert_eq!(w.current_run_id, Some(run));
    assert_eq!(WorkerState::of(w.silent_seconds, w.lease_secs as f64, w.stopped_at.is_some()), WorkerState::Alive, "{w:?}");
    assert!(w.current_run_lease_expires_at.is_some_and(|t| t > chrono::Utc::now()), "{w:?}");
    runs::cancel(&f.db.pool, f.team, run).await.unwrap();
    wait_for_status(&f.db.pool, run, "cancelled", Duration::from_secs(5)).await;
    handle.await.unwrap();
    let stopped_at = progress.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(progress.load(Ordering::SeqCst), stopped_at, "training goes on after cancel");
    assert!(stopped_at < 10_000);
}

#[tokio::test]
async fn shutdown_gives_the_run_back_to_the_queue() {
    let f = fixture().await;
    let run = f.queue().await;
    let (trainer, progress) = PacedTrainer::new(10_000, 20);
    let (tx, handle) = f.spawn(trainer, None);
    wait_for_progress(&progress, 2).await;
    tx.send(true).unwrap();
    handle.await.unwrap();
    let row = wait_for_status(&f.db.pool, run, "queued", Duration::from_secs(5)).await;
    assert_eq!(row.attempts, 0, "a clean shutdown does not use up an attempt");
    assert!(row.lease_token.is_none());
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_stops_and_writes_nothing_more() {
    let f = fixture().await;
    let run = f.queue().await;
    let (trainer, progress) = PacedTrainer::new(10_000, 20);
    let (_tx, handle) = f.spawn(trainer, Some(1));
    wait_for_progress(&progress, 2).await;
    // Another worker takes the run over, as after a network partition.
    // (A heartbeat landing between the two statements renews the lease; then try again.)
    loop {
        sqlx::query("update run set lease_expires_at = now() - interval '1 second' where id = $1")
            .bind(run)
            .execute(&f.db.pool)
            .await
            .unwrap();
        if queue::reap(&f.db.pool, Duration::ZERO).await.unwrap().iter().any(|r| r.id == run) {
            break;
        }
    }
    // The old holder's token-guarded writes lock the row for a moment, and `skip locked`
    // then skips it; a real worker would get it on its next poll.
    let started = Instant::now();
    let thief = loop {
        if let Some(lease) = queue::claim(&f.db.pool, "other-worker", Duration::from_secs(60)).await.unwrap() {
            break lease;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the reaped run was never claimable");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(thief.run.id, run);
    handle.await.unwrap();
    let before = runs::metrics(&f.db.pool, run).await.unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runs::metrics(&f.db.pool, run).await.unwrap().len(), before);
    let row = runs::get_any(&f.db.pool, run).await.unwrap();
    assert_eq!(row.status, "running");
    assert_eq!(row.lease_owner.as_deref(), Some("other-worker"));
}

#[tokio::test]
async fn failures_are_recorded_with_their_reason() {
    let f = fixture().await;
    let run = f.queue().await;
    let trainer = Arc::new(PacedTrainer { steps: 2, step_ms: 1, progress: Arc::new(AtomicU64::new(0)), diverge: true });
    let (_tx, handle) = f.spawn(trainer, Some(1));
    handle.await.unwrap();
    let row = wait_for_status(&f.db.pool, run, "failed", Duration::from_secs(5)).await;
    assert_eq!(row.error.as_deref(), Some("the loss became NaN at step 2; lower the learning rate"));
    let w = workers::list(&f.db.pool, 1).await.unwrap().remove(0);
    assert_eq!((w.claims, w.succeeded, w.failed), (1, 0, 1));

    // A run whose dataset file vanished fails with a clear error instead of looping.
    let run = f.queue().await;
    let ds = datasets::get_any(&f.db.pool, f.dataset).await.unwrap();
    f.store.delete(&ds.uri).await.unwrap();
    let (trainer, _) = PacedTrainer::new(1, 1);
    let (_tx, handle) = f.spawn(trainer, Some(1));
    handle.await.unwrap();
    let row = wait_for_status(&f.db.pool, run, "failed", Duration::from_secs(5)).await;
    assert!(row.error.unwrap().contains("dataset file"), "error names the dataset file");
}

#[tokio::test]
async fn an_unwritable_artifact_store_fails_the_run_and_records_no_artifact() {
    let f = fixture().await;
    let run = f.queue().await;
    let (trainer, progress) = PacedTrainer::new(5, 100);
    let (_tx, handle) = f.spawn(trainer, Some(1));
    // Mid-run, the run's folder in the store becomes a plain file, so nothing can be stored
    // under it any more (as with a read-only or full volume).
    wait_for_progress(&progress, 1).await;
    std::fs::create_dir_all(f.art_root.join("runs")).unwrap();
    std::fs::write(f.art_root.join("runs").join(run.to_string()), b"not a directory").unwrap();
    assert_eq!(handle.await.unwrap(), 1);
    let row = wait_for_status(&f.db.pool, run, "failed", Duration::from_secs(10)).await;
    let error = row.error.unwrap_or_default();
    assert!(error.starts_with("storing the results failed: artifact store"), "{error}");
    assert!(error.contains(&run.to_string()), "the error names the path: {error}");
    assert!(artifacts::list(&f.db.pool, run).await.unwrap().is_empty(), "no artifact row points at a missing file");
    assert!(runs::evaluations(&f.db.pool, run).await.unwrap().is_empty(), "no results without their artifacts");
    // What was recorded while training is kept.
    assert_eq!(runs::metrics(&f.db.pool, run).await.unwrap().len(), 5);
}

#[tokio::test]
async fn a_broken_artifact_store_fails_the_run_before_training() {
    let f = fixture().await;
    // `runs/` is a plain file: the worker cannot even look for a checkpoint.
    std::fs::write(f.art_root.join("runs"), b"not a directory").unwrap();
    let run = f.queue().await;
    let (trainer, progress) = PacedTrainer::new(3, 10);
    let (_tx, handle) = f.spawn(trainer, Some(1));
    assert_eq!(handle.await.unwrap(), 1);
    let row = wait_for_status(&f.db.pool, run, "failed", Duration::from_secs(10)).await;
    let error = row.error.unwrap_or_default();
    assert!(error.contains("artifact store") && error.contains("Not a directory"), "{error}");
    assert_eq!(progress.load(Ordering::SeqCst), 0, "no training without a usable store");
    assert!(artifacts::list(&f.db.pool, run).await.unwrap().is_empty());
}

/// The event path stalls for four lease periods while a run trains (a transaction holds an
/// exclusive lock on `run_metric`, so the recorder's first metric insert waits): the
/// heartbeat is not queued behind that write, so the lease never lapses; training runs on
/// (its events wait in the recorder's buffer); once the stall ends every event is written,
/// and the run finishes once, on its first attempt.
#[tokio::test]
async fn a_stalled_event_write_does_not_cost_the_lease() {
    let f = fixture().await;
    let run = f.queue().await;
    let mut stall = f.db.pool.begin().await.unwrap();
    sqlx::query("lock table run_metric in access exclusive mode").execute(&mut *stall).await.unwrap();
    let (trainer, progress) = PacedTrainer::new(40, 20);
    let (_tx, handle) = f.spawn(trainer, Some(1));
    wait_for_progress(&progress, 40).await;
    let lease_held = || async {
        sqlx::query_scalar::<_, bool>("select status = 'running' and lease_expires_at > now() from run where id = $1")
            .bind(run)
            .fetch_one(&f.db.pool)
            .await
            .unwrap()
    };
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(lease_held().await, "the lease lapsed while an event write was stalled");
    }
    stall.rollback().await.unwrap();
    assert_eq!(handle.await.unwrap(), 1);
    let row = wait_for_status(&f.db.pool, run, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(row.attempts, 1, "one attempt: the lease was never lost");
    let steps: Vec<i64> = runs::metrics(&f.db.pool, run).await.unwrap().iter().map(|m| m.step).collect();
    assert_eq!(steps, (1..=40).collect::<Vec<_>>(), "no event lost");
    assert_eq!(runs::rank_snapshots(&f.db.pool, run).await.unwrap().len(), 40);
    let progress = row.progress.expect("the last progress report").0;
    assert_eq!(progress["step"], 40);
}
