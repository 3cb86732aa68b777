//! Pacing of sweep work per node, so that anti-entropy never starves client traffic: a rate
//! limit in keys per second, and a back-off while a node's latency is high.

use quorumd_node::pool::Node;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When work of `n` units may start, and when the next may, at `rate` units per second,
/// given the earliest start `next` left by the previous grant. Pure, for tests.
pub fn schedule(next: Instant, now: Instant, n: u64, rate: u64) -> (Instant, Instant) {
    let start = next.max(now);
    let cost = if rate == 0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(n as f64 / rate as f64)
    };
    (start, start + cost)
}

/// One limiter per node.
pub struct Throttle {
    rate: u64,
    backoff_latency_ms: f64,
    next: Vec<Mutex<Instant>>,
}

impl Throttle {
    pub fn new(nodes: usize, rate: u64, backoff_latency_ms: u64) -> Self {
        Throttle {
            rate,
            backoff_latency_ms: backoff_latency_ms as f64,
            next: (0..nodes).map(|_| Mutex::new(Instant::now())).collect(),
        }
    }

    /// Waits until `n` units of work may be sent to `node`. Returns how long it waited.
    pub async fn acquire(&self, node: &Node, n: u64) -> Duration {
        let now = Instant::now();
        let start = {
            let mut next = self.next[node.id].lock().unwrap_or_else(|p| p.into_inner());
            let (start, after) = schedule(*next, now, n, self.rate);
            *next = after;
            start
        };
        // A slow node gets breathing room in proportion to how slow it is: client requests
        // queue behind sweep batches on the same connection.
        let backoff = match node.status().latency_ms {
            Some(ms) if self.backoff_latency_ms > 0.0 && ms > self.backoff_latency_ms => {
                Duration::from_secs_f64((ms * 4.0).min(1000.0) / 1000.0)
            }
            _ => Duration::ZERO,
        };
        let until = start + backoff;
        if until > now {
            tokio::time::sleep_until(until.into()).await;
        }
        until.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_spaced_by_rate() {
        let t0 = Instant::now();
        let (s1, n1) = schedule(t0, t0, 500, 1000);
        assert_eq!(s1, t0);
        assert_eq!(n1 - t0, Duration::from_millis(500));
        let (s2, n2) = schedule(n1, t0, 500, 1000);
        assert_eq!(s2, n1, "the second batch waits for the first's budget");
        assert_eq!(n2 - t0, Duration::from_secs(1));
    }

    #[test]
    fn idle_time_is_not_banked_and_zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(10);
        let (s, _) = schedule(t0, later, 100, 1000);
        assert_eq!(s, later);
        let (s, n) = schedule(t0, t0, 1_000_000, 0);
        assert_eq!((s, n), (t0, t0));
    }
}
