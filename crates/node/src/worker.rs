//! Background work with one shape: long-running loops are [`Worker`]s that a [`Workers`]
//! registry runs, watches and stops; short-lived jobs (read repairs, hint writes) are tracked
//! tasks that shutdown waits for instead of dropping them.
//!
//! A worker alternates between waiting for work and doing one pass of it. The registry keeps
//! each worker's status (for `GET /v1/status`), counts failed passes (`WorkerFailed`), and at
//! shutdown cancels the waits, lets passes in progress finish within a deadline, and cuts off
//! the rest.

use crate::events;
use futures::FutureExt;
use serde::Serialize;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// What a worker is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Waiting for work; the last pass (if any) succeeded.
    Idle,
    /// A pass is in progress.
    Running,
    /// The last pass failed (the worker retries when work is due again), or the worker
    /// panicked and ended.
    Failed,
    /// Ended by shutdown.
    Stopped,
}

/// One worker's status, as `GET /v1/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    pub name: String,
    pub state: WorkerState,
    /// Passes finished, failed ones included.
    pub runs: u64,
    pub failures: u64,
    /// The last failed pass's error, URL passwords masked.
    pub last_error: Option<String>,
    /// Wall-clock ms when a pass last started or ended; `None` before the first pass.
    pub last_activity_ms: Option<u64>,
}

/// Why a pass failed. The worker carries on; the failure is counted and shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WorkFailed(pub String);

/// A long-running background loop, split in the two halves the registry needs to supervise it.
pub trait Worker: Send + 'static {
    /// Names the worker in the status API, logs and the failure metric.
    fn name(&self) -> String;

    /// Resolves when a pass is due (a timer, a notification). Cancelled at shutdown.
    fn wait_for_work(&mut self) -> impl Future<Output = ()> + Send;

    /// One pass. Not cancelled at shutdown unless the worker's [`StopPhase`] says so: shutdown
    /// waits for it up to the drain deadline.
    fn work(&mut self) -> impl Future<Output = Result<(), WorkFailed>> + Send;
}

/// When in a shutdown a worker stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopPhase {
    /// Background work (sweeps): stopped first; a pass in progress may finish before the
    /// drain deadline.
    Background,
    /// Work that keeps the connections usable (probes, reconnects): stopped with the
    /// connections, last; a pass in progress is cut off, since it may wait on a stuck node.
    Connections,
}

/// What stopping a set of workers came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Workers that ended, their passes in progress (if any) finished.
    pub stopped: Vec<String>,
    /// Workers still in a pass at the deadline, aborted.
    pub cut_off: Vec<String>,
}

/// What waiting for tracked tasks came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TasksReport {
    /// Tasks in flight when the wait began.
    pub waited_for: usize,
    /// Of those, tasks still running at the deadline (left to the runtime's end).
    pub unfinished: usize,
}

struct Entry {
    name: String,
    phase: StopPhase,
    status: Arc<Mutex<WorkerStatus>>,
    handle: Option<JoinHandle<()>>,
}

/// The registry of this process's workers and tracked tasks.
pub struct Workers {
    entries: Mutex<Vec<Entry>>,
    stop_background: watch::Sender<bool>,
    stop_connections: watch::Sender<bool>,
    tasks: TaskTracker,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            entries: Mutex::default(),
            stop_background: watch::channel(false).0,
            stop_connections: watch::channel(false).0,
            tasks: TaskTracker::new(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Workers {
    pub fn new() -> Workers {
        Workers::default()
    }

    fn stop_signal(&self, phase: StopPhase) -> &watch::Sender<bool> {
        match phase {
            StopPhase::Background => &self.stop_background,
            StopPhase::Connections => &self.stop_connections,
        }
    }

    /// Starts `worker` and tracks it until shutdown. A worker started after its phase was
    /// stopped ends at once.
    pub fn spawn<W: Worker>(&self, phase: StopPhase, worker: W) {
        let name = worker.name();
        let status = Arc::new(Mutex::new(WorkerStatus {
            name: name.clone(),
            state: WorkerState::Idle,
            runs: 0,
            failures: 0,
            last_error: None,
            last_activity_ms: None,
        }));
        let stop = self.stop_signal(phase).subscribe();
        let handle = tokio::spawn(supervise(worker, name.clone(), status.clone(), stop));
        lock(&self.entries).push(Entry {
            name,
            phase,
            status,
            handle: Some(handle),
        });
    }

    /// Every worker's status, in the order they were started.
    pub fn status(&self) -> Vec<WorkerStatus> {
        lock(&self.entries)
            .iter()
            .map(|e| lock(&e.status).clone())
            .collect()
    }

    fn take_handles(
        &self,
        phase: StopPhase,
    ) -> Vec<(String, Arc<Mutex<WorkerStatus>>, JoinHandle<()>)> {
        lock(&self.entries)
            .iter_mut()
            .filter(|e| e.phase == phase)
            .filter_map(|e| {
                e.handle
                    .take()
                    .map(|h| (e.name.clone(), e.status.clone(), h))
            })
            .collect()
    }

    /// Stops the workers of `phase`: waits are cancelled at once, passes in progress get until
    /// `deadline` to finish, then are aborted.
    pub async fn stop(&self, phase: StopPhase, deadline: Instant) -> StopReport {
        let _ = self.stop_signal(phase).send(true);
        let mut report = StopReport::default();
        for (name, status, mut handle) in self.take_handles(phase) {
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(_) => report.stopped.push(name),
                Err(_) => {
                    handle.abort();
                    let _ = handle.await;
                    lock(&status).state = WorkerState::Stopped;
                    report.cut_off.push(name);
                }
            }
        }
        report
    }

    /// Ends the workers of `phase` at once, passes in progress included.
    pub async fn abort(&self, phase: StopPhase) {
        let _ = self.stop_signal(phase).send(true);
        for (_, status, handle) in self.take_handles(phase) {
            handle.abort();
            let _ = handle.await;
            let mut s = lock(&status);
            if s.state != WorkerState::Failed {
                s.state = WorkerState::Stopped;
            }
        }
    }

    /// Runs a short-lived background job (a read repair, a hint write) that shutdown waits
    /// for through [`Workers::wait_for_tasks`].
    pub fn spawn_task<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Tracked tasks in flight now.
    pub fn tasks_in_flight(&self) -> usize {
        self.tasks.len()
    }

    /// Waits until every tracked task has finished, or until `deadline`. Tasks spawned during
    /// the wait are waited for too.
    pub async fn wait_for_tasks(&self, deadline: Instant) -> TasksReport {
        let waited_for = self.tasks.len();
        self.tasks.close();
        let finished = tokio::time::timeout_at(deadline, self.tasks.wait()).await;
        TasksReport {
            waited_for,
            unfinished: if finished.is_ok() {
                0
            } else {
                self.tasks.len()
            },
        }
    }
}

/// Runs `worker` until `stop` is raised, keeping `status` current.
async fn supervise<W: Worker>(
    mut worker: W,
    name: String,
    status: Arc<Mutex<WorkerStatus>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            _ = worker.wait_for_work() => {}
        }
        {
            let mut s = lock(&status);
            s.state = WorkerState::Running;
            s.last_activity_ms = Some(quorumd_core::hlc::wall_clock_ms());
        }
        // A panicking pass must show as a failed worker, not as one running forever.
        let outcome = match AssertUnwindSafe(worker.work()).catch_unwind().await {
            Ok(result) => result.map_err(|e| (e, false)),
            Err(panic) => Err((WorkFailed(panic_message(panic.as_ref())), true)),
        };
        let mut s = lock(&status);
        s.runs += 1;
        s.last_activity_ms = Some(quorumd_core::hlc::wall_clock_ms());
        match outcome {
            Ok(()) => s.state = WorkerState::Idle,
            Err((error, fatal)) => {
                let error = quorumd_core::redact::mask_urls_in_text(&error.0);
                s.state = WorkerState::Failed;
                s.failures += 1;
                s.last_error = Some(error.clone());
                drop(s);
                events::WorkerFailed {
                    worker: &name,
                    error: &error,
                    fatal,
                }
                .emit();
                if fatal {
                    return;
                }
            }
        }
    }
    lock(&status).state = WorkerState::Stopped;
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("panicked: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::sync::{Notify, oneshot};

    /// Stops the background phase, waiting at most `within`.
    async fn stop_background(workers: &Workers, within: Duration) -> StopReport {
        workers
            .stop(StopPhase::Background, Instant::now() + within)
            .await
    }

    /// A background worker whose first pass is running, held open until `hold` fires.
    async fn in_a_held_pass(
        due: &Arc<Notify>,
        passes: Arc<AtomicUsize>,
        hold: oneshot::Receiver<()>,
    ) -> Workers {
        let workers = Workers::new();
        workers.spawn(
            StopPhase::Background,
            Flaky {
                due: due.clone(),
                passes,
                hold: Some(hold),
            },
        );
        due.notify_one();
        wait_for(&workers, |s| s.state == WorkerState::Running).await;
        workers
    }

    /// Fails every other pass; a pass can be held open with `hold`.
    struct Flaky {
        due: Arc<Notify>,
        passes: Arc<AtomicUsize>,
        hold: Option<oneshot::Receiver<()>>,
    }

    impl Worker for Flaky {
        fn name(&self) -> String {
            "flaky".into()
        }

        async fn wait_for_work(&mut self) {
            self.due.notified().await
        }

        async fn work(&mut self) -> Result<(), WorkFailed> {
            if let Some(hold) = self.hold.take() {
                let _ = hold.await;
            }
            let n = self.passes.fetch_add(1, Ordering::SeqCst);
            if n % 2 == 1 {
                Err(WorkFailed("redis://:hunter2@db:6379 refused".into()))
            } else {
                Ok(())
            }
        }
    }

    async fn wait_for(workers: &Workers, cond: impl Fn(&WorkerStatus) -> bool) -> WorkerStatus {
        loop {
            let s = workers.status().remove(0);
            if cond(&s) {
                return s;
            }
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn failures_are_counted_masked_and_the_worker_carries_on() {
        let workers = Workers::new();
        let due = Arc::new(Notify::new());
        let passes = Arc::new(AtomicUsize::new(0));
        workers.spawn(
            StopPhase::Background,
            Flaky {
                due: due.clone(),
                passes: passes.clone(),
                hold: None,
            },
        );
        assert_eq!(workers.status()[0].state, WorkerState::Idle);
        due.notify_one();
        let s = wait_for(&workers, |s| s.runs == 1).await;
        assert_eq!((s.state, s.failures), (WorkerState::Idle, 0));
        due.notify_one();
        let s = wait_for(&workers, |s| s.runs == 2).await;
        assert_eq!((s.state, s.failures), (WorkerState::Failed, 1));
        let error = s.last_error.unwrap();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("refused"), "{error}");
        assert!(s.last_activity_ms.is_some());
        // The failure did not end the worker: the next pass runs and succeeds.
        due.notify_one();
        let s = wait_for(&workers, |s| s.runs == 3).await;
        assert_eq!((s.state, s.failures), (WorkerState::Idle, 1));
        let report = stop_background(&workers, Duration::from_secs(5)).await;
        assert_eq!(report.stopped, vec!["flaky".to_string()]);
        assert_eq!(workers.status()[0].state, WorkerState::Stopped);
    }

    #[tokio::test]
    async fn stop_waits_for_a_pass_in_progress_until_the_deadline_only() {
        let due = Arc::new(Notify::new());
        let passes = Arc::new(AtomicUsize::new(0));
        let (release, hold) = oneshot::channel();
        let workers = in_a_held_pass(&due, passes.clone(), hold).await;
        // Released after the stop began: the stop must have waited for the pass.
        let stopping = tokio::spawn(async move {
            tokio::task::yield_now().await;
            let _ = release.send(());
        });
        let report = stop_background(&workers, Duration::from_secs(5)).await;
        stopping.await.unwrap();
        assert_eq!(report.stopped, vec!["flaky".to_string()]);
        assert_eq!(passes.load(Ordering::SeqCst), 1, "the pass finished");

        // A pass that never ends is cut off at the deadline.
        let (_never, hold) = oneshot::channel();
        let workers = in_a_held_pass(&due, Arc::new(AtomicUsize::new(0)), hold).await;
        let report = stop_background(&workers, Duration::from_millis(50)).await;
        assert_eq!(report.cut_off, vec!["flaky".to_string()]);
        assert_eq!(workers.status()[0].state, WorkerState::Stopped);
    }

    #[tokio::test]
    async fn only_the_stopped_phase_ends() {
        let workers = Workers::new();
        let due = Arc::new(Notify::new());
        for phase in [StopPhase::Background, StopPhase::Connections] {
            workers.spawn(
                phase,
                Flaky {
                    due: due.clone(),
                    passes: Arc::new(AtomicUsize::new(0)),
                    hold: None,
                },
            );
        }
        stop_background(&workers, Duration::from_secs(5)).await;
        let states: Vec<WorkerState> = workers.status().iter().map(|s| s.state).collect();
        assert_eq!(states, vec![WorkerState::Stopped, WorkerState::Idle]);
        workers.abort(StopPhase::Connections).await;
        assert_eq!(workers.status()[1].state, WorkerState::Stopped);
    }

    #[tokio::test]
    async fn waiting_for_tasks_waits_for_the_ones_in_flight() {
        let workers = Workers::new();
        let (release, held) = oneshot::channel::<()>();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        workers.spawn_task(async move {
            let _ = held.await;
            d.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(workers.tasks_in_flight(), 1);
        let report = workers
            .wait_for_tasks(Instant::now() + Duration::from_millis(50))
            .await;
        assert_eq!(
            report,
            TasksReport {
                waited_for: 1,
                unfinished: 1
            }
        );
        release.send(()).unwrap();
        let report = workers
            .wait_for_tasks(Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(report.unfinished, 0);
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
