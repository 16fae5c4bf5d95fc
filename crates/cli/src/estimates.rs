//! `rankfit estimates`: how good the pre-launch estimates are, on this fleet's finished runs.
//! For each run: the estimate it was queued with, and a leave-one-out re-estimate from every
//! other run's measurement (what a launch gets once the fleet has measured the model), each
//! against the measured wall time; then the median error and the share inside the band.

use rankfit_domain::estimate::{self, human_duration, Basis, Estimate, FinishedRun};

use crate::db::Database;

/// Prints the report for the newest `limit` succeeded runs.
pub async fn report(db: &Database, limit: i64) -> anyhow::Result<()> {
    let rows = rankfit_store::runs::recent_costs(&db.pool, limit).await?;
    let runs: Vec<(String, FinishedRun)> =
        rows.iter().filter_map(|r| Some((format!("{} {}", &r.id.to_string()[..8], r.method), r.finished_run()?))).collect();
    if runs.is_empty() {
        println!("no succeeded run with a throughput summary yet");
        return Ok(());
    }
    let finished: Vec<FinishedRun> = runs.iter().map(|(_, r)| r.clone()).collect();
    let observations: Vec<_> = finished.iter().filter_map(|r| r.observation.clone()).collect();
    let device = estimate::expected_device(&observations).to_string();
    let loo = estimate::leave_one_out(&finished, &device);
    println!("{:<24} {:>9} {:>20} {:>20}", "run (newest first)", "actual", "queued with", "leave-one-out");
    let (mut queued, mut left_out) = (Vec::new(), Vec::new());
    for ((name, r), l) in runs.iter().zip(&loo) {
        let Some(actual) = r.actual_seconds else { continue };
        let cell = |e: &Estimate| {
            let basis = match e.basis {
                Basis::Measured { runs, .. } => format!("m{runs}"),
                Basis::Reference => "ref".into(),
            };
            format!("{} {:+.0}% ({basis})", human_duration(e.total_seconds), 100.0 * (actual / e.total_seconds - 1.0))
        };
        println!(
            "{:<24} {:>9} {:>20} {:>20}",
            name,
            human_duration(actual),
            r.estimate.as_ref().map(cell).unwrap_or_else(|| "-".into()),
            l.as_ref().map(cell).unwrap_or_else(|| "-".into())
        );
        if let Some(e) = &r.estimate {
            queued.push((e.clone(), actual));
        }
        if let Some(e) = l {
            left_out.push((e.clone(), actual));
        }
    }
    for (what, pairs) in [("queued with", &queued), ("leave-one-out", &left_out)] {
        if let Some(a) = estimate::accuracy(pairs) {
            println!(
                "{what}: {} runs, median |error| {:.0}%, {:.0}% inside their band",
                a.runs,
                100.0 * a.median_relative_error,
                100.0 * a.within_band
            );
        }
    }
    println!("(ref: the reference machine's throughput; mN: the median of N measured runs of the model on {device})");
    Ok(())
}
