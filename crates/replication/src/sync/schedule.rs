//! When sweeps run: the digest exchange on an interval and whenever a node needs attention
//! (recovering, or back from down), the full sweep on a cron schedule; on-demand sweeps come
//! through `Sweeper::begin` from the API or the CLI. Never two sweeps of one kind at once.
//!
//! Both scheduled sweeps are workers of the pool's registry (`sweep:exchange`, `sweep:full`):
//! their status shows in `GET /v1/status`, a pass with errors counts as a failure, and
//! shutdown stops them with the other background workers.

use super::{SweepMode, SweepReport, SweepRequest, SweepTrigger, Sweeper, SyncError};
use quorumd_node::worker::{StopPhase, WorkFailed, Worker};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_cron_scheduler::{Job, JobScheduler};

/// The running schedule. Its workers stop with the registry's background phase; `stop` ends
/// the cron and hands the shard leases back.
pub struct Schedule {
    cron: Option<JobScheduler>,
    sweeper: Arc<Sweeper>,
}

/// A sweep pass that met errors failed; the first error says why.
fn outcome(report: &SweepReport) -> Result<(), WorkFailed> {
    if report.error_count == 0 {
        return Ok(());
    }
    let first = report.errors.first().map(String::as_str).unwrap_or("");
    Err(WorkFailed(format!(
        "{} sweep {} met {} errors; first: {first}",
        report.mode.as_str(),
        report.id,
        report.error_count
    )))
}

/// Replays hints, renews this instance's shard leases and runs the digest exchange over its
/// shards, every `interval` (never, if zero) and whenever a node needs attention.
struct ExchangeWorker {
    sweeper: Arc<Sweeper>,
    interval: Duration,
    attention: Arc<Notify>,
    trigger: SweepTrigger,
}

impl Worker for ExchangeWorker {
    fn name(&self) -> String {
        "sweep:exchange".into()
    }

    async fn wait_for_work(&mut self) {
        self.trigger = tokio::select! {
            _ = self.attention.notified() => SweepTrigger::Recovery,
            _ = tokio::time::sleep(self.interval), if !self.interval.is_zero() => SweepTrigger::Schedule,
        };
    }

    async fn work(&mut self) -> Result<(), WorkFailed> {
        match self
            .sweeper
            .run(SweepRequest::new(SweepMode::Exchange, self.trigger))
            .await
        {
            Ok(report) => outcome(&report),
            // A sweep already running (e.g. started through the API) covers this pass.
            Err(SyncError::AlreadyRunning(_)) => Ok(()),
            Err(e) => Err(WorkFailed(e.to_string())),
        }
    }
}

/// Runs the full sweep when the cron fires and this instance holds the full-sweep lease.
struct FullSweepWorker {
    sweeper: Arc<Sweeper>,
    due: Arc<Notify>,
}

impl Worker for FullSweepWorker {
    fn name(&self) -> String {
        "sweep:full".into()
    }

    async fn wait_for_work(&mut self) {
        self.due.notified().await
    }

    async fn work(&mut self) -> Result<(), WorkFailed> {
        // Every instance's cron fires; the one holding the lease runs the sweep.
        if !self
            .sweeper
            .leases()
            .full_sweep_turn(self.sweeper.pool())
            .await
        {
            return Ok(());
        }
        let request = SweepRequest::new(SweepMode::Full, SweepTrigger::Schedule);
        match self.sweeper.run(request).await {
            Ok(report) => outcome(&report),
            Err(SyncError::AlreadyRunning(_)) => Ok(()),
            Err(e) => Err(WorkFailed(e.to_string())),
        }
    }
}

impl Schedule {
    pub async fn start(sweeper: Arc<Sweeper>) -> Result<Schedule, SyncError> {
        let workers = sweeper.pool().workers();
        super::live::start(&sweeper);
        workers.spawn(
            StopPhase::Background,
            ExchangeWorker {
                interval: Duration::from_millis(sweeper.config().exchange_interval_ms),
                attention: sweeper.pool().attention(),
                sweeper: sweeper.clone(),
                trigger: SweepTrigger::Schedule,
            },
        );
        let cron_expr = sweeper.config().full_sweep_cron.trim().to_string();
        let cron = if cron_expr.is_empty() {
            None
        } else {
            let err =
                |e: tokio_cron_scheduler::JobSchedulerError| SyncError::Scheduler(e.to_string());
            let sched = JobScheduler::new().await.map_err(err)?;
            let due = Arc::new(Notify::new());
            let tick = due.clone();
            // The cron only says when; the worker does the sweep. `notify_waiters` stores no
            // permit: a tick while the last full sweep still runs is skipped, not queued.
            let job = Job::new_async(cron_expr.as_str(), move |_, _| {
                let tick = tick.clone();
                Box::pin(async move { tick.notify_waiters() })
            })
            .map_err(err)?;
            sched.add(job).await.map_err(err)?;
            sched.start().await.map_err(err)?;
            workers.spawn(
                StopPhase::Background,
                FullSweepWorker {
                    sweeper: sweeper.clone(),
                    due,
                },
            );
            Some(sched)
        };
        Ok(Schedule { cron, sweeper })
    }

    /// Ends the cron and hands this instance's shards back to the others. The sweep workers
    /// must have been stopped first (`Workers::stop` of the background phase), or a pass still
    /// running could take shards again.
    pub async fn stop(mut self) {
        if let Some(mut c) = self.cron.take() {
            let _ = c.shutdown().await;
        }
        self.sweeper.leases().release_all(self.sweeper.pool()).await;
    }

    /// Stops at once without handing anything back, as a crash would: the shards stay leased
    /// until their leases expire.
    pub async fn abort(mut self) {
        self.sweeper
            .pool()
            .workers()
            .abort(StopPhase::Background)
            .await;
        if let Some(mut c) = self.cron.take() {
            let _ = c.shutdown().await;
        }
    }
}
