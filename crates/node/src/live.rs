//! The live feed: what the dashboard and `GET /v1/events` show as it happens.
//!
//! A broadcast channel carries [`LiveEvent`]s; publishing never waits (a subscriber that falls
//! behind loses the oldest messages and is told so by the channel). Beside the channel, the
//! feed keeps what a newly connected client needs to draw the current picture: the state of
//! every bucket, the recent repairs and errors, and the repair counts of the last minutes.
//! Pure state, no I/O: the pool owns one feed per service, so every layer above reaches it.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::{broadcast, watch};

/// Messages a subscriber may fall behind by before it is told it lagged.
pub const CHANNEL_CAPACITY: usize = 1024;
/// Recent repairs and errors kept for new subscribers.
const RECENT_KEPT: usize = 50;
/// Width of one slot of the repair-rate history, and how many slots are kept (10 minutes).
pub const RATE_SLOT_S: u64 = 5;
const RATE_SLOTS: usize = 120;

/// What the grid shows for one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum BucketState {
    /// The last exchange that covered it found every node's digest equal.
    InSync = 0,
    /// Digests differ; not repaired yet (or only a dry run looked).
    Differing = 1,
    /// Being repaired now.
    Repairing = 2,
    /// Repaired by the last exchange; the next one confirms it in sync.
    Repaired = 3,
}

impl BucketState {
    pub fn as_str(self) -> &'static str {
        match self {
            BucketState::InSync => "in_sync",
            BucketState::Differing => "differing",
            BucketState::Repairing => "repairing",
            BucketState::Repaired => "repaired",
        }
    }
}

/// One message of the live feed (`type` names it in JSON).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A node's health changed.
    Node {
        node: usize,
        address: String,
        from: String,
        to: String,
        reason: String,
        at_ms: u64,
    },
    /// A running sweep's report (throttled by the publisher).
    SweepProgress { report: serde_json::Value },
    /// A sweep finished.
    SweepFinished { report: serde_json::Value },
    /// Buckets changed state. With `reset`, every bucket not listed is now in sync.
    Buckets {
        state: BucketState,
        buckets: Vec<u32>,
        reset: bool,
    },
    /// Keys written to stale nodes: by an exchange batch (`source` = "exchange"), or by read
    /// repair ("read").
    Repair {
        source: &'static str,
        keys: u64,
        buckets: u64,
        at_ms: u64,
    },
    /// Something failed that an operator should see (`alert`, not `error`: an EventSource
    /// reserves that name for its own connection errors).
    Alert { message: String, at_ms: u64 },
}

/// What a new subscriber starts from.
#[derive(Debug, Clone, Serialize)]
pub struct LiveSnapshot {
    /// One digit per bucket: 0 in sync, 1 differing, 2 repairing, 3 repaired.
    pub buckets: String,
    pub recent: Vec<LiveEvent>,
    /// Keys repaired per `RATE_SLOT_S`-second slot, oldest first, ending with the current one.
    pub repair_rate: RepairRate,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepairRate {
    pub slot_s: u64,
    /// Start of the last slot, in seconds since the epoch.
    pub last_slot_start_s: u64,
    pub keys: Vec<u64>,
}

struct Board {
    buckets: Vec<BucketState>,
    recent: VecDeque<LiveEvent>,
    /// (slot start in s, keys repaired in it), oldest first.
    rate: VecDeque<(u64, u64)>,
}

/// The live feed of one service.
pub struct LiveFeed {
    tx: broadcast::Sender<LiveEvent>,
    board: Mutex<Board>,
    /// Set when the service shuts down: streams end, so a graceful shutdown never waits on an
    /// open dashboard.
    closed: watch::Sender<bool>,
}

impl LiveFeed {
    pub fn new(buckets: u32) -> LiveFeed {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        LiveFeed {
            tx,
            closed: watch::Sender::new(false),
            board: Mutex::new(Board {
                buckets: vec![BucketState::InSync; buckets as usize],
                recent: VecDeque::new(),
                rate: VecDeque::new(),
            }),
        }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }

    /// Ends every stream fed from here (at shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves once `close` was called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let mut rx = self.closed.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Records the event in the board and sends it to every subscriber. Never waits.
    pub fn publish(&self, event: LiveEvent) {
        {
            let mut b = self.board();
            match &event {
                LiveEvent::Buckets {
                    state,
                    buckets,
                    reset,
                } => {
                    if *reset {
                        b.buckets.fill(BucketState::InSync);
                    }
                    let len = b.buckets.len();
                    for &i in buckets {
                        if (i as usize) < len {
                            b.buckets[i as usize] = *state;
                        }
                    }
                }
                LiveEvent::Repair { keys, at_ms, .. } => {
                    let slot = at_ms / 1000 / RATE_SLOT_S * RATE_SLOT_S;
                    match b.rate.back_mut() {
                        Some((s, n)) if *s == slot => *n += keys,
                        _ => b.rate.push_back((slot, *keys)),
                    }
                    while b.rate.len() > RATE_SLOTS {
                        b.rate.pop_front();
                    }
                    push_recent(&mut b.recent, event.clone());
                }
                LiveEvent::Alert { .. } | LiveEvent::Node { .. } => {
                    push_recent(&mut b.recent, event.clone())
                }
                LiveEvent::SweepProgress { .. } | LiveEvent::SweepFinished { .. } => {}
            }
        }
        // No subscriber is not an error: the feed runs whether anyone watches or not.
        let _ = self.tx.send(event);
    }

    /// The state of every bucket.
    pub fn bucket_states(&self) -> Vec<BucketState> {
        self.board().buckets.clone()
    }

    pub fn snapshot(&self, now_ms: u64) -> LiveSnapshot {
        let b = self.board();
        let buckets = b
            .buckets
            .iter()
            .map(|s| char::from(b'0' + *s as u8))
            .collect();
        let now_slot = now_ms / 1000 / RATE_SLOT_S * RATE_SLOT_S;
        let first = now_slot.saturating_sub((RATE_SLOTS as u64 - 1) * RATE_SLOT_S);
        let keys = (0..RATE_SLOTS as u64)
            .map(|i| {
                let slot = first + i * RATE_SLOT_S;
                b.rate
                    .iter()
                    .find(|(s, _)| *s == slot)
                    .map_or(0, |(_, n)| *n)
            })
            .collect();
        LiveSnapshot {
            buckets,
            recent: b.recent.iter().cloned().collect(),
            repair_rate: RepairRate {
                slot_s: RATE_SLOT_S,
                last_slot_start_s: now_slot,
                keys,
            },
        }
    }
}

fn push_recent(recent: &mut VecDeque<LiveEvent>, e: LiveEvent) {
    recent.push_back(e);
    while recent.len() > RECENT_KEPT {
        recent.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_states_follow_events_and_reset() {
        let feed = LiveFeed::new(8);
        feed.publish(LiveEvent::Buckets {
            state: BucketState::Differing,
            buckets: vec![1, 5, 99],
            reset: true,
        });
        assert_eq!(feed.snapshot(0).buckets, "01000100");
        feed.publish(LiveEvent::Buckets {
            state: BucketState::Repaired,
            buckets: vec![5],
            reset: false,
        });
        assert_eq!(feed.snapshot(0).buckets, "01000300");
        feed.publish(LiveEvent::Buckets {
            state: BucketState::Differing,
            buckets: vec![],
            reset: true,
        });
        assert_eq!(feed.snapshot(0).buckets, "00000000");
    }

    #[test]
    fn repair_rate_sums_per_slot_and_ends_now() {
        let feed = LiveFeed::new(1);
        let t = 1_000_000_000;
        for (at, keys) in [(t, 3), (t + 1000, 4), (t + 6000, 5)] {
            feed.publish(LiveEvent::Repair {
                source: "exchange",
                keys,
                buckets: 1,
                at_ms: at,
            });
        }
        let s = feed.snapshot(t + 6000);
        let k = &s.repair_rate.keys;
        assert_eq!(k.len(), RATE_SLOTS);
        assert_eq!(k[RATE_SLOTS - 1], 5);
        assert_eq!(k[RATE_SLOTS - 2], 7);
        assert_eq!(s.recent.len(), 3);
    }

    #[test]
    fn publishing_without_subscribers_or_to_a_full_channel_never_blocks() {
        let feed = LiveFeed::new(1);
        let mut slow = feed.subscribe();
        for i in 0..(CHANNEL_CAPACITY * 3) {
            feed.publish(LiveEvent::Alert {
                message: format!("e{i}"),
                at_ms: 0,
            });
        }
        assert!(matches!(
            slow.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
        assert_eq!(feed.snapshot(0).recent.len(), RECENT_KEPT);
    }
}
