//! The rankfit worker: claims runs from the PostgreSQL queue, trains each one on a
//! dedicated OS thread through `rankfit_train::train`, and records what it reports.
//!
//! While a run trains, the async side heartbeats the lease every `lease / 3`. A lost
//! lease (another worker took the run over after we stalled) stops training and writes
//! nothing more; a cancel request stops training and marks the run cancelled.
//! Checkpoints written by the trainer are uploaded to the artifact store, so a run
//! whose worker died resumes on any machine from its last checkpoint.
//!
//! Three parties per run, so that nothing slow can block the lease:
//! - the **training thread** (an OS thread: burn is synchronous) sends what it reports into a
//!   bounded channel ([`EVENT_BUFFER`] events). When the recorder falls that far behind, the
//!   training thread blocks on the send: back-pressure slows training down, and no event is
//!   ever dropped. Progress reports are the exception by design: they are a latest-value
//!   state, not history, so they go through a `watch` channel where a newer report replaces
//!   an unwritten older one.
//! - the **recorder** task writes events, metrics, rank snapshots, progress and checkpoint
//!   uploads, retrying each write; it stops writing once the lease is lost.
//! - the **run loop** only heartbeats the lease and watches for cancel and shutdown, so a
//!   stalled database write or artifact upload never delays a heartbeat. It finishes the run
//!   once the training thread has returned and the recorder has drained every event.
//!
//! Every log line of a run, from all three, carries a `run` span with its id.

mod archive;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rankfit_domain::dataset::{self, ParseOptions};
use rankfit_domain::run::RunConfig;
use rankfit_store::queue::{self, Lease, Outcome};
use rankfit_store::{artifacts, datasets, events, workers, ArtifactStore, Pool, StoreError};
use rankfit_train::{ArtifactKind, TrainEvent, TrainJob, TrainOutput};
use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;
use uuid::Uuid;

/// What trains a job. [`BurnTrainer`] is the real one; the seam lets the worker's
/// lease/cancel/shutdown handling be tested with trainers of known timing.
pub trait Trainer: Send + Sync + 'static {
    fn train(
        &self,
        job: &TrainJob,
        on_event: &mut dyn FnMut(TrainEvent),
        cancel: &AtomicBool,
    ) -> Result<TrainOutput, rankfit_train::TrainError>;
}

/// Trains with `rankfit_train` (burn).
pub struct BurnTrainer;

impl Trainer for BurnTrainer {
    fn train(
        &self,
        job: &TrainJob,
        on_event: &mut dyn FnMut(TrainEvent),
        cancel: &AtomicBool,
    ) -> Result<TrainOutput, rankfit_train::TrainError> {
        rankfit_train::train(job, on_event, cancel)
    }
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Recorded as the lease owner (host:pid by default).
    pub name: String,
    pub lease: Duration,
    /// Longest wait between queue polls when no notification arrives.
    pub poll: Duration,
    /// Base of the exponential backoff applied to runs whose lease expired.
    pub backoff_base: Duration,
    pub assets_dir: PathBuf,
    /// Scratch space; each run gets `<work_root>/<run id>`.
    pub work_root: PathBuf,
    /// Stop after this many runs (tests, `rankfit demo`); None runs forever.
    pub max_runs: Option<usize>,
    /// Where it trains (`cpu`, `cuda:N`), as the fleet view shows it.
    pub device: String,
}

impl WorkerConfig {
    pub fn new(assets_dir: PathBuf, work_root: PathBuf) -> Self {
        Self {
            name: default_name(),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(5),
            backoff_base: Duration::from_secs(5),
            assets_dir,
            work_root,
            max_runs: None,
            device: rankfit_train::device::ComputeDevice::from_env().map(|d| d.to_string()).unwrap_or_else(|_| "cpu".into()),
        }
    }

    /// What the fleet view shows about this worker.
    fn registration(&self) -> workers::NewWorker {
        let host = hostname();
        let features = if cfg!(feature = "cuda") { vec!["cuda".to_string()] } else { Vec::new() };
        workers::NewWorker {
            name: self.name.clone(),
            host,
            pid: std::process::id() as i32,
            device: self.device.clone(),
            features,
            version: env!("CARGO_PKG_VERSION").to_string(),
            lease_secs: self.lease.as_secs().max(1) as i32,
        }
    }
}

/// Heartbeats the worker's presence (and the run it is on) every `every` until `current`'s
/// sender is dropped.
async fn presence(pool: Pool, name: String, every: Duration, mut current: watch::Receiver<Option<Uuid>>) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = current.changed() => if changed.is_err() { return },
        }
        let run = *current.borrow();
        if let Err(e) = workers::beat(&pool, &name, run).await {
            tracing::warn!("worker heartbeat failed: {e}");
        }
    }
}

/// Counts what the worker did; best effort (a failed count never fails a run).
async fn count(pool: &Pool, name: &str, event: workers::WorkerEvent) {
    if let Err(e) = workers::record(pool, name, event).await {
        tracing::warn!("could not record {event:?} for worker {name}: {e}");
    }
}

/// `host:pid`.
pub fn default_name() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "worker".into())
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Runs the claim loop until `shutdown` turns true (or `max_runs` is reached).
/// On shutdown a run in progress is stopped and released back to the queue.
pub async fn run(
    pool: Pool,
    store: ArtifactStore,
    cfg: WorkerConfig,
    trainer: Arc<dyn Trainer>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<usize, WorkerError> {
    let mut listener = match PgListener::connect_with(&pool).await {
        Ok(mut l) => match l.listen(queue::QUEUED_CHANNEL).await {
            Ok(()) => Some(l),
            Err(e) => {
                tracing::warn!("LISTEN failed ({e}); falling back to polling");
                None
            }
        },
        Err(e) => {
            tracing::warn!("LISTEN connection failed ({e}); falling back to polling");
            None
        }
    };
    let mut done = 0usize;
    let me = cfg.registration();
    retrying("registering the worker", || workers::register(&pool, &me)).await?;
    let (current_tx, current_rx) = watch::channel(None::<Uuid>);
    let beating = tokio::spawn(presence(pool.clone(), cfg.name.clone(), cfg.lease / 3, current_rx));
    tracing::info!(worker = %cfg.name, device = %cfg.device, "worker started");
    while !*shutdown.borrow() {
        if cfg.max_runs.is_some_and(|m| done >= m) {
            break;
        }
        let claimed = match queue::reap(&pool, cfg.backoff_base).await {
            Ok(reaped) => {
                if !reaped.is_empty() {
                    count(&pool, &cfg.name, workers::WorkerEvent::Reaped(reaped.len() as u32)).await;
                }
                for r in reaped {
                    tracing::warn!(run = %r.id, status = %r.status, attempts = r.attempts, "expired lease reaped");
                }
                queue::claim(&pool, &cfg.name, cfg.lease).await
            }
            Err(e) => Err(e),
        };
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) if e.is_transient() => {
                tracing::warn!("the database is unreachable ({e}); retrying in {:?}", cfg.poll);
                tokio::select! {
                    _ = tokio::time::sleep(cfg.poll) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match claimed {
            Some(lease) => {
                let id = lease.run.id;
                tracing::info!(run = %id, attempt = lease.run.attempts, "claimed run");
                count(&pool, &cfg.name, workers::WorkerEvent::Claimed).await;
                let _ = current_tx.send(Some(id));
                let ended = process(&pool, &store, &cfg, &trainer, lease, &mut shutdown).await;
                let _ = current_tx.send(None);
                match ended {
                    Ok(Some(succeeded)) => count(&pool, &cfg.name, workers::WorkerEvent::Finished { succeeded }).await,
                    Ok(None) => {}
                    // The database stayed away too long: the lease expires and the run is
                    // retried by whichever worker claims it next.
                    Err(WorkerError::Store(e)) if e.is_transient() => {
                        tracing::warn!(run = %id, "giving the run up: the database stayed unreachable ({e})")
                    }
                    Err(e) => return Err(e),
                }
                done += 1;
            }
            None => {
                let notified = async {
                    match listener.as_mut() {
                        Some(l) => {
                            if let Err(e) = l.recv().await {
                                tracing::warn!("LISTEN connection lost ({e}); it reconnects on next use");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(cfg.poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    drop(current_tx);
    let _ = beating.await;
    if let Err(e) = workers::stopped(&pool, &cfg.name).await {
        tracing::warn!("could not mark the worker stopped: {e}");
    }
    tracing::info!(worker = %cfg.name, runs = done, "worker stopped");
    Ok(done)
}

/// How long a worker keeps retrying a write while the database is unreachable.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// Runs `op` until it succeeds, fails for good, or the database has been unreachable for
/// [`RETRY_FOR`]; a PostgreSQL restart costs a pause, never a metric or a result.
async fn retrying<T, F, Fut>(what: &str, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match op().await {
            Err(e) if e.is_transient() && started.elapsed() < RETRY_FOR => {
                tracing::warn!("{what}: the database is unreachable ({e}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Why the trainer was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    None,
    UserCancel,
    LeaseLost,
    Shutdown,
}

fn checkpoint_uri(run_id: Uuid) -> String {
    format!("runs/{run_id}/checkpoint.zip")
}

/// Trains one leased run to a terminal state (or releases it on shutdown). Returns
/// whether it succeeded when it ended succeeded or failed; None when it was cancelled,
/// released or its lease lost.
async fn process(
    pool: &Pool,
    store: &ArtifactStore,
    cfg: &WorkerConfig,
    trainer: &Arc<dyn Trainer>,
    lease: Lease,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<bool>, WorkerError> {
    let run_id = lease.run.id;
    let token = lease.token;
    let job = match prepare(pool, store, cfg, &lease).await {
        Ok(job) => job,
        Err(message) => {
            tracing::warn!(run = %run_id, "cannot start: {message}");
            let outcome = Outcome::Failed { error: message };
            retrying("failing the run", || queue::finish(pool, run_id, token, &outcome)).await?;
            return Ok(Some(false));
        }
    };

    let cancel = Arc::new(AtomicBool::new(false));
    let lease_lost = Arc::new(AtomicBool::new(false));
    let span = tracing::info_span!("run", run = %run_id);
    let (tx, rx) = mpsc::channel::<TrainEvent>(EVENT_BUFFER);
    let (progress_tx, progress_rx) = watch::channel::<Option<serde_json::Value>>(None);
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let thread_cancel = cancel.clone();
    let thread_job = job.clone();
    let trainer = trainer.clone();
    let thread_span = span.clone();
    std::thread::Builder::new()
        .name(format!("train-{run_id}"))
        .spawn(move || {
            let _in_run = thread_span.enter();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut emit = |e: TrainEvent| match e {
                    TrainEvent::Progress(p) => {
                        let _ = progress_tx.send(serde_json::to_value(&p).ok());
                    }
                    // Blocks while the recorder is EVENT_BUFFER events behind (back-pressure);
                    // fails only once the recorder is gone, i.e. the attempt is being abandoned.
                    other => {
                        let _ = tx.blocking_send(other);
                    }
                };
                trainer.train(&thread_job, &mut emit, &thread_cancel)
            }));
            let _ = done_tx.send(result);
        })
        .map_err(|e| StoreError::Corrupt(format!("cannot spawn the training thread: {e}")))?;
    let mut recorder = tokio::spawn(
        record_all(pool.clone(), store.clone(), job.clone(), token, rx, progress_rx, lease_lost.clone()).instrument(span.clone()),
    );

    let mut stop = Stop::None;
    let mut beat = tokio::time::interval(cfg.lease / 3);
    beat.tick().await;
    let mut result = None;
    let mut recorded = false;
    async {
        while result.is_none() || !recorded {
            tokio::select! {
                _ = beat.tick() => {
                    match queue::heartbeat(pool, run_id, token, cfg.lease).await {
                        Ok(Some(b)) if b.cancel_requested && stop == Stop::None => {
                            stop = Stop::UserCancel;
                            cancel.store(true, Ordering::SeqCst);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            tracing::warn!("lease lost; stopping this attempt");
                            stop = Stop::LeaseLost;
                            lease_lost.store(true, Ordering::SeqCst);
                            cancel.store(true, Ordering::SeqCst);
                        }
                        Err(e) => tracing::warn!("heartbeat failed: {e}"),
                    }
                }
                _ = shutdown.changed(), if stop == Stop::None => {
                    if *shutdown.borrow() {
                        stop = Stop::Shutdown;
                        cancel.store(true, Ordering::SeqCst);
                    }
                }
                r = &mut done_rx, if result.is_none() => result = Some(r),
                r = &mut recorder, if !recorded => {
                    if let Err(e) = r {
                        tracing::warn!("the event recorder stopped: {e}");
                    }
                    recorded = true;
                }
            }
        }
    }
    .instrument(span.clone())
    .await;
    let result = match result.expect("the loop ends once training has returned") {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(rankfit_train::TrainError::Crashed(msg))
        }
        Err(_) => Err(rankfit_train::TrainError::Crashed("the training thread vanished".into())),
    };
    match (stop, result) {
        (Stop::LeaseLost, _) => Ok(None),
        (Stop::Shutdown, _) => {
            retrying("releasing the run", || queue::release(pool, run_id, token)).await?;
            Ok(None)
        }
        (Stop::UserCancel, _) | (_, Err(rankfit_train::TrainError::Cancelled)) => {
            retrying("finishing the run", || queue::finish(pool, run_id, token, &Outcome::Cancelled)).await?;
            Ok(None)
        }
        (Stop::None, Ok(output)) => {
            let outcome = match retrying("publishing the results", || publish(pool, store, &job, token, &output)).await {
                Ok(()) => Outcome::Succeeded { summary: output.summary.to_value() },
                Err(e) => Outcome::Failed { error: format!("storing the results failed: {e}") },
            };
            retrying("finishing the run", || queue::finish(pool, run_id, token, &outcome)).await?;
            let succeeded = matches!(outcome, Outcome::Succeeded { .. });
            if succeeded {
                let _ = std::fs::remove_dir_all(&job.work_dir);
            }
            Ok(Some(succeeded))
        }
        (Stop::None, Err(e)) => {
            tracing::warn!(run = %run_id, "run failed: {e}");
            let outcome = Outcome::Failed { error: e.to_string() };
            retrying("finishing the run", || queue::finish(pool, run_id, token, &outcome)).await?;
            Ok(Some(false))
        }
    }
}

/// Loads the dataset and config, and restores the last checkpoint when resuming.
async fn prepare(pool: &Pool, store: &ArtifactStore, cfg: &WorkerConfig, lease: &Lease) -> Result<TrainJob, String> {
    let run = &lease.run;
    let config: RunConfig = serde_json::from_value(run.config.0.clone()).map_err(|e| format!("invalid stored config: {e}"))?;
    let ds = datasets::get_any(pool, run.dataset_id).await.map_err(|e| format!("dataset {}: {e}", run.dataset_id))?;
    let opts: ParseOptions = serde_json::from_value(ds.parse_options.0.clone()).map_err(|e| format!("dataset options: {e}"))?;
    let bytes = store.get(&ds.uri).await.map_err(|e| format!("dataset file {}: {e}", ds.uri))?;
    let parsed = tokio::task::spawn_blocking(move || dataset::parse(&bytes, &opts))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("dataset no longer parses: {e}"))?;
    let work_dir = cfg.work_root.join(run.id.to_string());
    std::fs::create_dir_all(&work_dir).map_err(|e| format!("work dir {}: {e}", work_dir.display()))?;
    restore_checkpoint(store, run.id, &work_dir).await?;
    Ok(TrainJob {
        run_id: run.id,
        base_model: run.base_model_id.clone(),
        config,
        budget: run.budget as u32,
        seed: run.seed as u64,
        dataset: parsed,
        selection_metric: Some(ds.primary_metric.clone()),
        assets_dir: cfg.assets_dir.clone(),
        work_dir,
    })
}

/// Brings the run's last uploaded checkpoint into `work_dir/checkpoint` unless a local
/// copy is at least as new (same machine).
async fn restore_checkpoint(store: &ArtifactStore, run_id: Uuid, work_dir: &Path) -> Result<(), String> {
    let local = work_dir.join(rankfit_train::CHECKPOINT_DIR);
    let uri = checkpoint_uri(run_id);
    if local.exists() || !store.exists(&uri).await.map_err(|e| e.to_string())? {
        return Ok(());
    }
    let data = store.get(&uri).await.map_err(|e| format!("checkpoint download: {e}"))?;
    let dest = local.clone();
    tokio::task::spawn_blocking(move || archive::unzip_dir(&data, &dest))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("checkpoint unpack: {e}"))
}

/// Events a training thread may be ahead of its recorder before it waits (back-pressure).
pub const EVENT_BUFFER: usize = 1024;

/// Writes what the training thread reports, in order, until it stops reporting (its sender
/// is dropped when training returns), then the last progress report. Every write is retried;
/// nothing is written once the lease is lost.
async fn record_all(
    pool: Pool,
    store: ArtifactStore,
    job: TrainJob,
    token: Uuid,
    mut events: mpsc::Receiver<TrainEvent>,
    mut progress: watch::Receiver<Option<serde_json::Value>>,
    lease_lost: Arc<AtomicBool>,
) {
    let run_id = job.run_id;
    let write_progress = |p: serde_json::Value| {
        let pool = pool.clone();
        async move {
            if let Err(e) = events::record_progress(&pool, run_id, token, &p).await {
                tracing::warn!("recording progress failed: {e}");
            }
        }
    };
    let mut progress_open = true;
    let mut written: Option<serde_json::Value> = None;
    loop {
        tokio::select! {
            // Events first: a progress report never overtakes what happened before it.
            biased;
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                if lease_lost.load(Ordering::SeqCst) {
                    continue;
                }
                if let Err(e) = retrying("recording an event", || record_event(&pool, &store, &job, token, ev.clone())).await {
                    tracing::warn!("recording an event failed: {e}");
                }
            }
            changed = progress.changed(), if progress_open => {
                if changed.is_err() {
                    progress_open = false;
                    continue;
                }
                let latest = progress.borrow_and_update().clone();
                if latest.is_some() && latest != written && !lease_lost.load(Ordering::SeqCst) {
                    written = latest.clone();
                    write_progress(latest.unwrap_or_default()).await;
                }
            }
        }
    }
    // The final report, if the training thread sent it after the last one written.
    let latest = progress.borrow().clone();
    if latest.is_some() && latest != written && !lease_lost.load(Ordering::SeqCst) {
        write_progress(latest.unwrap_or_default()).await;
    }
}

async fn record_event(pool: &Pool, store: &ArtifactStore, job: &TrainJob, token: Uuid, ev: TrainEvent) -> Result<(), StoreError> {
    let id = job.run_id;
    match ev {
        TrainEvent::Metric { step, split, name, value } => {
            if value.is_finite() {
                events::record_metric(pool, id, token, step as i64, &split, &name, value).await?;
            }
        }
        TrainEvent::Ranks(map) => {
            events::record_ranks(pool, id, token, &map).await?;
        }
        TrainEvent::Checkpoint { step } => {
            let zip = zip_to_file(&job.work_dir.join(rankfit_train::CHECKPOINT_DIR), &job.work_dir.join("checkpoint-upload.zip")).await?;
            let uri = checkpoint_uri(id);
            let uploaded = store.put_file(&uri, &zip).await;
            let _ = std::fs::remove_file(&zip);
            let (bytes, sha) = uploaded?;
            artifacts::record(pool, id, token, ArtifactKind::Checkpoint.as_str(), &uri, bytes, &sha).await?;
            events::log(pool, id, "checkpoint", &serde_json::json!({ "step": step, "bytes": bytes })).await?;
        }
        TrainEvent::Log { message } => {
            events::log(pool, id, "log", &serde_json::json!({ "message": message })).await?;
        }
        TrainEvent::Progress(p) => {
            let value = serde_json::to_value(&p).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            events::record_progress(pool, id, token, &value).await?;
        }
    }
    Ok(())
}

/// Zips the directory `dir` into the file `out` (on a blocking thread) and returns `out`.
async fn zip_to_file(dir: &Path, out: &Path) -> Result<PathBuf, StoreError> {
    let (d, o) = (dir.to_path_buf(), out.to_path_buf());
    tokio::task::spawn_blocking(move || archive::zip_dir_to(&d, &o))
        .await
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        .map_err(|e| StoreError::Corrupt(format!("zipping {}: {e}", dir.display())))?;
    Ok(out.to_path_buf())
}

/// Uploads the exported artifacts, then records them, the test predictions and the
/// evaluations (guarded by the lease). Uploads come first so no row ever points at a missing file.
async fn publish(pool: &Pool, store: &ArtifactStore, job: &TrainJob, token: Uuid, out: &TrainOutput) -> Result<(), StoreError> {
    let mut uploaded: Vec<(String, &str, i64, String)> = Vec::new();
    for (kind, path) in &out.artifacts {
        // Directories are zipped to a file next to them, and every file is uploaded as it is
        // read: an export is never held whole in memory.
        let (uri, file) = if path.is_dir() {
            let zip = zip_to_file(path, &path.with_extension("zip")).await?;
            (format!("runs/{}/{}.zip", job.run_id, kind.as_str()), zip)
        } else {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("bin");
            (format!("runs/{}/{}.{ext}", job.run_id, kind.as_str()), path.clone())
        };
        match store.put_file(&uri, &file).await {
            Ok((bytes, sha)) => uploaded.push((uri, kind.as_str(), bytes, sha)),
            Err(e) => {
                for (u, _, _, _) in &uploaded {
                    let _ = store.delete(u).await;
                }
                return Err(e);
            }
        }
    }
    for (uri, kind, bytes, sha) in &uploaded {
        artifacts::record(pool, job.run_id, token, kind, uri, *bytes, sha).await?;
    }
    if !out.predictions.is_empty() {
        rankfit_store::studies::record_predictions(pool, job.run_id, token, "test", &out.predictions).await?;
    }
    for (split, metrics) in &out.evaluations {
        events::record_evaluation(pool, job.run_id, token, split, &serde_json::Value::Object(metrics.clone())).await?;
    }
    Ok(())
}
