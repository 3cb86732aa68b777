//! Health state machine of one node. Pure: fed with probe and request outcomes, it says which
//! state the node is in and when that changed.

use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant};

/// Consecutive failed probes after which a suspect node is declared down.
pub const PROBES_UNTIL_DOWN: u32 = 3;

/// Health of a node as seen by this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not probed yet: nothing is known of it. Left at the node's first probe, before the
    /// service starts, so a running service shows it only for a node added since.
    Unknown,
    /// Answering.
    Up,
    /// A request or probe just failed; still used, probed again at once.
    Suspect,
    /// Not answering; not used until a probe succeeds.
    Down,
    /// Restarted and possibly missing data: takes writes, not counted for reads until the
    /// anti-entropy sweep has brought it back in sync.
    Recovering,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Suspect => "suspect",
            Health::Down => "down",
            Health::Recovering => "recovering",
        })
    }
}

/// Smoothing factor of the latency average: recent answers weigh about a fifth.
const LATENCY_ALPHA: f64 = 0.2;

#[derive(Debug, Clone)]
pub struct HealthTracker {
    /// Liveness as probes see it: unknown (before the first probe), up, suspect or down.
    live: Health,
    /// Sticky until the sweep clears it, across any liveness changes in between.
    recovering: bool,
    since: Instant,
    failed_probes: u32,
    latency_ms: Option<f64>,
    last_error: Option<String>,
    /// The last request the node refused as a whole (OOM, READONLY, ...), and when: a node in
    /// that state answers probes and stays `up`.
    last_refusal: Option<(String, Instant)>,
}

impl Default for HealthTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthTracker {
    /// A node is unknown until its first probe: taking it for down would log a "down → up"
    /// for every node at every start.
    pub fn new() -> Self {
        HealthTracker {
            live: Health::Unknown,
            recovering: false,
            since: Instant::now(),
            failed_probes: 0,
            latency_ms: None,
            last_error: None,
            last_refusal: None,
        }
    }

    /// Down wins over recovering (the node is not there); otherwise a recovering node is
    /// reported as such whether it is up, suspect or not probed yet (its first probe found
    /// the loss).
    pub fn health(&self) -> Health {
        match (self.live, self.recovering) {
            (Health::Down, _) => Health::Down,
            (_, true) => Health::Recovering,
            (live, false) => live,
        }
    }
    pub fn since(&self) -> Instant {
        self.since
    }
    pub fn latency_ms(&self) -> Option<f64> {
        self.latency_ms
    }
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The last whole-request refusal and how long ago it was.
    pub fn last_refusal(&self) -> Option<(&str, Duration)> {
        self.last_refusal
            .as_ref()
            .map(|(e, at)| (e.as_str(), at.elapsed()))
    }

    pub fn refused(&mut self, error: String) {
        self.last_refusal = Some((error, Instant::now()));
    }

    /// Applies `change` and reports the visible transition, if any.
    fn update(&mut self, change: impl FnOnce(&mut Self)) -> Option<(Health, Health)> {
        let before = self.health();
        change(self);
        let after = self.health();
        if before == after {
            return None;
        }
        self.since = Instant::now();
        Some((before, after))
    }

    pub fn record_latency(&mut self, rtt: Duration) {
        let ms = rtt.as_secs_f64() * 1000.0;
        self.latency_ms = Some(match self.latency_ms {
            Some(avg) => avg + LATENCY_ALPHA * (ms - avg),
            None => ms,
        });
    }

    /// Returns the transition, if the state changed.
    pub fn probe_succeeded(&mut self, rtt: Duration) -> Option<(Health, Health)> {
        self.record_latency(rtt);
        self.failed_probes = 0;
        // The status shows what is wrong now: an error the node has recovered from stays in
        // the `node health changed` log line, not beside `up`.
        self.last_error = None;
        self.update(|t| t.live = Health::Up)
    }

    pub fn probe_failed(&mut self, error: String) -> Option<(Health, Health)> {
        self.last_error = Some(error);
        self.failed_probes += 1;
        // A node never reached is down at once: it has no connection to use.
        let down = self.failed_probes >= PROBES_UNTIL_DOWN
            || matches!(self.live, Health::Down | Health::Unknown);
        self.update(|t| t.live = if down { Health::Down } else { Health::Suspect })
    }

    pub fn request_failed(&mut self, error: String) -> Option<(Health, Health)> {
        self.last_error = Some(error);
        self.update(|t| {
            if t.live == Health::Up {
                t.live = Health::Suspect;
            }
        })
    }

    pub fn mark_recovering(&mut self) -> Option<(Health, Health)> {
        self.update(|t| t.recovering = true)
    }

    pub fn is_recovering(&self) -> bool {
        self.recovering
    }

    /// Leaves `recovering` once the sweep has brought the node back in sync.
    pub fn synced(&mut self) -> Option<(Health, Health)> {
        self.update(|t| t.recovering = false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe answered in 1 ms.
    const RTT: Duration = Duration::from_millis(1);

    /// A tracker whose node answered its first probe.
    fn up() -> HealthTracker {
        let mut t = HealthTracker::new();
        t.probe_succeeded(RTT);
        t
    }

    #[test]
    fn starts_unknown_and_comes_up_on_first_probe() {
        let mut t = HealthTracker::new();
        assert_eq!(t.health(), Health::Unknown);
        assert_eq!(
            t.probe_succeeded(Duration::from_millis(2)),
            Some((Health::Unknown, Health::Up))
        );
        assert_eq!(t.latency_ms(), Some(2.0));
    }

    #[test]
    fn a_node_not_reached_at_first_is_down_and_one_found_wiped_is_recovering() {
        let mut t = HealthTracker::new();
        assert_eq!(
            t.probe_failed("refused".into()),
            Some((Health::Unknown, Health::Down))
        );
        let mut t = HealthTracker::new();
        assert_eq!(
            t.mark_recovering(),
            Some((Health::Unknown, Health::Recovering))
        );
        assert_eq!(t.probe_succeeded(RTT), None);
        assert_eq!(t.request_failed("x".into()), None);
        assert_eq!(HealthTracker::new().request_failed("x".into()), None);
    }

    #[test]
    fn goes_suspect_then_down_after_repeated_failures() {
        let mut t = up();
        assert_eq!(
            t.request_failed("timeout".into()),
            Some((Health::Up, Health::Suspect))
        );
        assert_eq!(t.probe_failed("x".into()), None);
        assert_eq!(t.probe_failed("x".into()), None);
        assert_eq!(
            t.probe_failed("x".into()),
            Some((Health::Suspect, Health::Down))
        );
        assert_eq!(t.last_error(), Some("x"));
        assert_eq!(t.probe_succeeded(RTT), Some((Health::Down, Health::Up)));
        assert_eq!(t.last_error(), None, "back up: the error is history");
    }

    #[test]
    fn one_good_probe_clears_suspicion() {
        let mut t = up();
        t.probe_failed("blip".into());
        assert_eq!(t.health(), Health::Suspect);
        assert_eq!(t.probe_succeeded(RTT), Some((Health::Suspect, Health::Up)));
    }

    #[test]
    fn recovering_is_left_only_by_the_sweep() {
        let mut t = up();
        assert_eq!(t.mark_recovering(), Some((Health::Up, Health::Recovering)));
        assert_eq!(t.probe_succeeded(RTT), None);
        assert_eq!(t.health(), Health::Recovering);
        assert_eq!(t.synced(), Some((Health::Recovering, Health::Up)));
        assert_eq!(t.synced(), None);
    }

    #[test]
    fn recovering_survives_going_down_and_coming_back() {
        let mut t = up();
        t.mark_recovering();
        for _ in 0..PROBES_UNTIL_DOWN {
            t.probe_failed("gone".into());
        }
        assert_eq!(t.health(), Health::Down);
        assert_eq!(
            t.probe_succeeded(RTT),
            Some((Health::Down, Health::Recovering))
        );
    }

    #[test]
    fn latency_is_smoothed() {
        let mut t = HealthTracker::new();
        t.record_latency(Duration::from_millis(10));
        t.record_latency(Duration::from_millis(20));
        assert!((t.latency_ms().unwrap() - 12.0).abs() < 1e-9);
    }
}
