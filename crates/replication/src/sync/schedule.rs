//! When sweeps run: the digest exchange on an interval and whenever a node needs attention
//! (recovering, or back from down), the full sweep on a cron schedule; on-demand sweeps come
//! through `Sweeper::begin` from the API or the CLI. Never two sweeps of one kind at once.

use super::{SweepMode, SweepRequest, SweepTrigger, Sweeper, SyncError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_cron_scheduler::{Job, JobScheduler};

/// The running schedule; `stop` ends it.
pub struct Schedule {
    stop: watch::Sender<bool>,
    exchange_loop: JoinHandle<()>,
    cron: Option<JobScheduler>,
    sweeper: Arc<Sweeper>,
}

impl Schedule {
    pub async fn start(sweeper: Arc<Sweeper>) -> Result<Schedule, SyncError> {
        let (stop, mut stopped) = watch::channel(false);
        let interval = Duration::from_millis(sweeper.config().exchange_interval_ms);
        let attention = sweeper.pool().attention();
        let sw = sweeper.clone();
        let exchange_loop = tokio::spawn(async move {
            loop {
                let trigger = tokio::select! {
                    _ = stopped.changed() => return,
                    _ = attention.notified() => SweepTrigger::Recovery,
                    _ = tokio::time::sleep(interval), if !interval.is_zero() => SweepTrigger::Schedule,
                };
                // A sweep already running (e.g. started through the API) covers this tick.
                let _ = sw
                    .run(SweepRequest::new(SweepMode::Exchange, trigger))
                    .await;
            }
        });
        let cron_expr = sweeper.config().full_sweep_cron.trim().to_string();
        let cron = if cron_expr.is_empty() {
            None
        } else {
            let err =
                |e: tokio_cron_scheduler::JobSchedulerError| SyncError::Scheduler(e.to_string());
            let sched = JobScheduler::new().await.map_err(err)?;
            let sw = sweeper.clone();
            let job = Job::new_async(cron_expr.as_str(), move |_, _| {
                let sw = sw.clone();
                Box::pin(async move {
                    // Every instance's cron fires; the one holding the lease runs the sweep.
                    if sw.leases().full_sweep_turn(sw.pool()).await {
                        let _ = sw
                            .run(SweepRequest::new(SweepMode::Full, SweepTrigger::Schedule))
                            .await;
                    }
                })
            })
            .map_err(err)?;
            sched.add(job).await.map_err(err)?;
            sched.start().await.map_err(err)?;
            Some(sched)
        };
        Ok(Schedule {
            stop,
            exchange_loop,
            cron,
            sweeper,
        })
    }

    /// Stops scheduling and hands this instance's shards back to the others.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = self.exchange_loop.await;
        if let Some(mut c) = self.cron.take() {
            let _ = c.shutdown().await;
        }
        self.sweeper.leases().release_all(self.sweeper.pool()).await;
    }

    /// Stops at once without handing anything back, as a crash would: the shards stay leased
    /// until their leases expire.
    pub fn abort(self) {
        self.exchange_loop.abort();
    }
}
