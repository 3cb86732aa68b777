//! Distributed locks over the node pool: Redlock on a majority of the configured nodes, plus
//! fencing tokens. See docs/LOCKS.md for the guarantees and the argument why fences strictly
//! increase.
//!
//! An acquisition proposes a fence (the highest counter this process has seen for the lock,
//! plus one) and runs one script per node, on every node at once: if the lock is free and the
//! proposal is above the node's fence counter, take it (`SET PX` with a random token) and set
//! the counter to the proposal, in one atomic step. With a majority of counted nodes granted,
//! the lock is granted with that fence and validity `ttl − elapsed − drift`. Anything short of
//! that releases what it took at once; a proposal refused as stale is retried at once above the
//! counters the nodes returned, a lock held elsewhere after a random pause, until `wait_ms`
//! runs out.

pub mod events;
mod hints;
mod recovery;

mod knobs {
    /// Test-only ways to break the lock on purpose, so that the checkers can be shown to catch
    /// what these allow. Exported only with the `fault-injection` feature, which only the test kit
    /// enables: the service binary cannot set them.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct UnsafeKnobs {
        /// Grant with this many nodes instead of a majority (e.g. 1: a minority).
        pub required: Option<usize>,
        /// Count a restarted node toward majorities at once, without the TTL delay or fence
        /// catch-up.
        pub count_restarted_at_once: bool,
        /// Let a restarted node count after the TTL delay without raising its fence counters
        /// (the catch-up copies nothing).
        pub skip_fence_catch_up: bool,
    }
}

use crate::fanout::{FailureCause, NodeFailure, QuorumError};
use hints::FenceHints;
use quorumd_core::config::LocksConfig;
use quorumd_core::layout::Layout;
use quorumd_core::quorum::majority;
use quorumd_node::calls;
use quorumd_node::calls::locks::{Extended, LockKeys, NodeView, Taken};
use quorumd_node::pool::{NodeError, NodeId, NodePool};
use recovery::RecoveryGate;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest lock name accepted.
pub const MAX_NAME_BYTES: usize = 200;
/// Longest owner label accepted.
pub const MAX_OWNER_BYTES: usize = 200;
/// Locks whose highest fence a process remembers (about 250 bytes each at most): beyond that the
/// least recently used are forgotten and cost a second round trip at their next acquisition.
const FENCE_HINTS: usize = 8192;
/// Stale proposals retried at once in a row. Each retry proposes above every counter the nodes
/// returned, so another refusal means another acquirer raised a counter meanwhile; past this
/// many, the retry waits a random pause like a held lock.
const STALE_RETRIES: u32 = 3;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LockError {
    #[error("{0}")]
    Invalid(String),
    #[error("lock {name:?} is held by another owner and wait_ms ran out")]
    Held { name: String },
    #[error("the token does not hold lock {name:?} on a majority of the nodes")]
    NotHolder { name: String },
    #[error(transparent)]
    NoQuorum(#[from] QuorumError),
}

/// A client's extend or release, counted with its result.
fn counted<T>(operation: &'static str, result: Result<T, LockError>) -> Result<T, LockError> {
    crate::locks::events::LockChanged {
        operation,
        result: result.as_ref().map_or_else(LockError::label, |_| "ok"),
    }
    .emit();
    result
}

impl LockError {
    /// The `result` label of the lock metrics.
    pub fn label(&self) -> &'static str {
        match self {
            LockError::Invalid(_) => "invalid",
            LockError::Held { .. } => "held",
            LockError::NotHolder { .. } => "not_holder",
            LockError::NoQuorum(_) => "no_quorum",
        }
    }
}

/// A granted lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub token: String,
    pub fence: u64,
    /// How long, from when the request started, the holder may act as holder.
    pub validity_ms: u64,
}

/// What the nodes say about a lock, without the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockState {
    pub held: bool,
    pub owner: Option<String>,
    /// Shortest remaining TTL among the majority holding it.
    pub remaining_ms: Option<u64>,
    /// The holder's fence when held; otherwise the highest fence issued so far.
    pub fence: u64,
}

#[cfg(feature = "fault-injection")]
pub use knobs::UnsafeKnobs;
#[cfg(not(feature = "fault-injection"))]
use knobs::UnsafeKnobs;

/// Why one attempt did not grant.
enum Shortfall {
    /// Some node holds it for someone else.
    Held,
    /// Some node refused the proposed fence as not above its counter (this process's hint was
    /// behind): worth retrying at once with the counters it returned.
    Stale(QuorumError),
    /// Too few nodes answered (or counted) to decide.
    Unavailable(QuorumError),
}

pub struct LockService {
    pool: Arc<NodePool>,
    cfg: LocksConfig,
    layout: Layout,
    knobs: UnsafeKnobs,
    gate: Arc<RecoveryGate>,
    hints: FenceHints,
}

/// Checks a user-supplied lock name: 1 to 200 bytes of `A-Z a-z 0-9 _ . : -`.
pub fn validate_name(name: &str) -> Result<(), LockError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(LockError::Invalid(format!(
            "the name must be 1 to {MAX_NAME_BYTES} bytes long (got {})",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(LockError::Invalid(format!(
            "the name may contain only letters, digits and _ . : - (found {c:?})"
        )));
    }
    Ok(())
}

/// Checks a token's shape (32 lowercase hex digits), so no input reaches a script unchecked.
pub fn validate_token(token: &str) -> Result<(), LockError> {
    if token.len() == 32
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(LockError::Invalid(
            "the token must be the 32 hex digits an acquisition returned".into(),
        ))
    }
}

/// The drift allowance of a lock with `ttl_ms` (Redlock: a factor of the TTL plus a constant).
pub fn drift_ms(cfg: &LocksConfig, ttl_ms: u64) -> u64 {
    (ttl_ms as f64 * cfg.drift_factor).ceil() as u64 + cfg.drift_ms
}

/// Validity left of a lock with `ttl_ms` taken `elapsed` ago, or `None` when nothing is left.
pub fn validity_ms(cfg: &LocksConfig, ttl_ms: u64, elapsed: Duration) -> Option<u64> {
    // Rounded up: a partial millisecond already spent is spent.
    let spent = elapsed.as_micros().div_ceil(1000) as u64;
    ttl_ms
        .checked_sub(spent + drift_ms(cfg, ttl_ms))
        .filter(|v| *v > 0)
}

fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn failure(pool: &NodePool, node: NodeId, cause: impl Into<FailureCause>) -> NodeFailure {
    NodeFailure::new(pool.node(node).display.clone(), cause)
}

/// Runs `op` on every node at once and waits for every answer (each bounded by its node
/// timeout); returns them in node order. Lock and queue operations need all answers: a node
/// that did not clearly refuse may hold a key that must be given back.
pub async fn on_all_nodes<T, F, Fut>(pool: &NodePool, op: F) -> Vec<(NodeId, Result<T, NodeError>)>
where
    F: Fn(Arc<quorumd_node::pool::Node>) -> Fut,
    Fut: Future<Output = Result<T, NodeError>>,
{
    let calls = pool.nodes().iter().map(|n| {
        let id = n.id;
        let fut = op(n.clone());
        async move { (id, fut.await) }
    });
    futures::future::join_all(calls).await
}

impl LockService {
    pub fn new(pool: Arc<NodePool>, cfg: LocksConfig, layout: &Layout) -> Arc<LockService> {
        Self::build(pool, cfg, layout, UnsafeKnobs::default())
    }

    /// A lock service with safety rules switched off: for negative controls in tests only.
    #[cfg(feature = "fault-injection")]
    pub fn with_unsafe_knobs(
        pool: Arc<NodePool>,
        cfg: LocksConfig,
        layout: &Layout,
        knobs: UnsafeKnobs,
    ) -> Arc<LockService> {
        Self::build(pool, cfg, layout, knobs)
    }

    fn build(
        pool: Arc<NodePool>,
        cfg: LocksConfig,
        layout: &Layout,
        knobs: UnsafeKnobs,
    ) -> Arc<LockService> {
        let gate = RecoveryGate::new(
            pool.clone(),
            &cfg,
            &layout.prefix,
            !knobs.skip_fence_catch_up,
        );
        Arc::new(LockService {
            pool,
            cfg,
            layout: layout.clone(),
            knobs,
            gate,
            hints: FenceHints::new(FENCE_HINTS),
        })
    }

    pub fn config(&self) -> &LocksConfig {
        &self.cfg
    }

    /// Keeps this service's `locks:gate` worker from catching nodes up: for negative controls
    /// that run another service, with the catch-up switched off, over the same pool.
    #[cfg(feature = "fault-injection")]
    pub fn pause_gate_worker(&self) {
        self.gate.pause_worker();
    }

    /// Keys of a user lock.
    pub fn user_keys(&self, name: &str) -> LockKeys {
        self.keys("l", name, name)
    }

    /// Keys of a lock in namespace `kind` (`l` user locks, `q` queue item leases), so that
    /// different users of the lock module never share a key. Under slot placement both keys
    /// carry the tag of `group`'s slot: the scripts that touch them with other keys of the
    /// group (a queue's hashes) stay in one slot.
    pub fn keys(&self, kind: &str, name: &str, group: &str) -> LockKeys {
        let (prefix, tag) = (&self.layout.prefix, self.layout.group_tag(group));
        LockKeys {
            lock: format!("{prefix}lock{tag}:{kind}:{name}"),
            fence: format!("{prefix}fence{tag}:{kind}:{name}"),
        }
    }

    fn required(&self) -> usize {
        self.knobs.required.unwrap_or(majority(self.pool.len()))
    }

    /// Whether `node`'s answers count toward the majority of the lock at `keys` now.
    fn counts(&self, node: NodeId, keys: &LockKeys) -> bool {
        self.counts_toward_majority(node, Some(keys.lock.as_bytes()))
    }

    /// Whether `node` counts toward the majority of the lock at `key` now (`None`: of any
    /// lock). False for a restarted node until the longest TTL has passed and its fences were
    /// caught up, except, for a cluster replica, for the locks in slots it did not lose.
    pub fn counts_toward_majority(&self, node: NodeId, key: Option<&[u8]>) -> bool {
        self.knobs.count_restarted_at_once || self.gate.counts(node, key)
    }

    fn not_counted_reason(&self, node: NodeId) -> FailureCause {
        FailureCause::NotCounted(self.gate.why_not_counted(node))
    }

    fn node_limit(&self) -> Duration {
        Duration::from_millis(self.cfg.node_timeout_ms)
    }

    /// Per-node limit of an acquisition: also at most a fifth of the TTL, so one slow node
    /// cannot eat the lock's validity.
    fn acquire_limit(&self, ttl_ms: u64) -> Duration {
        Duration::from_millis(self.cfg.node_timeout_ms.min((ttl_ms / 5).max(1)))
    }

    async fn on_all<T, F, Fut>(&self, op: F) -> Vec<(NodeId, Result<T, NodeError>)>
    where
        F: Fn(Arc<quorumd_node::pool::Node>) -> Fut,
        Fut: Future<Output = Result<T, NodeError>>,
    {
        on_all_nodes(&self.pool, op).await
    }

    fn validate_ttl(&self, ttl_ms: u64) -> Result<(), LockError> {
        if ttl_ms == 0 || ttl_ms > self.cfg.max_ttl_ms {
            return Err(LockError::Invalid(format!(
                "ttl_ms must be between 1 and {} (locks.max_ttl_ms), got {ttl_ms}",
                self.cfg.max_ttl_ms
            )));
        }
        // A TTL within the clock drift allowance leaves no validity however fast the nodes
        // answer: refused before anything is written (an extend would cut the lock short).
        let drift = drift_ms(&self.cfg, ttl_ms);
        if ttl_ms <= drift {
            return Err(LockError::Invalid(format!(
                "ttl_ms must be above the clock drift allowance of {drift} ms (locks.drift_ms \
                 plus locks.drift_factor of the ttl), got {ttl_ms}"
            )));
        }
        Ok(())
    }

    /// The failure of a lock step a majority applied too slowly for its TTL: nothing of its
    /// validity was left when the answers were in.
    fn too_slow(
        operation: &'static str,
        required: usize,
        applied: usize,
        ttl_ms: u64,
    ) -> QuorumError {
        QuorumError {
            operation,
            required,
            succeeded: 0,
            failures: vec![NodeFailure::new(
                "all",
                FailureCause::NotCounted(format!(
                    "{applied} nodes applied it, but it took longer than the ttl of {ttl_ms} ms \
                     allows (ask for a longer ttl_ms)"
                )),
            )],
        }
    }

    /// Acquires user lock `name`.
    #[tracing::instrument(level = "debug", name = "locks.acquire", skip_all, fields(name = name, ttl_ms, wait_ms))]
    pub async fn acquire(
        &self,
        name: &str,
        ttl_ms: u64,
        wait_ms: u64,
        owner: &str,
    ) -> Result<Grant, LockError> {
        let started = Instant::now();
        let result = match validate_name(name) {
            Ok(()) => {
                self.acquire_keys(&self.user_keys(name), name, ttl_ms, wait_ms, owner)
                    .await
            }
            Err(e) => Err(e),
        };
        crate::locks::events::LockAcquired {
            result: result.as_ref().map_or_else(LockError::label, |_| "granted"),
            elapsed: started.elapsed(),
        }
        .emit();
        result
    }

    /// Acquires the lock at `keys`, retrying with random pauses until `wait_ms` runs out.
    pub async fn acquire_keys(
        &self,
        keys: &LockKeys,
        name: &str,
        ttl_ms: u64,
        wait_ms: u64,
        owner: &str,
    ) -> Result<Grant, LockError> {
        self.validate_ttl(ttl_ms)?;
        if owner.len() > MAX_OWNER_BYTES {
            return Err(LockError::Invalid(format!(
                "owner must be at most {MAX_OWNER_BYTES} bytes"
            )));
        }
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        let mut stale_in_a_row = 0;
        loop {
            let shortfall = match self.attempt(keys, ttl_ms, owner).await {
                Ok(grant) => return Ok(grant),
                Err(s) => s,
            };
            // Not bound by `wait_ms`: a stale hint must cost a round trip, not the acquisition
            // (the queue claims with `wait_ms` 0).
            if matches!(shortfall, Shortfall::Stale(_)) && stale_in_a_row < STALE_RETRIES {
                stale_in_a_row += 1;
                continue;
            }
            stale_in_a_row = 0;
            let pause = Duration::from_millis(rand::random_range(
                self.cfg.retry_min_ms..=self.cfg.retry_max_ms.max(1),
            ));
            if Instant::now() + pause >= deadline {
                return Err(match shortfall {
                    Shortfall::Held => LockError::Held {
                        name: name.to_string(),
                    },
                    Shortfall::Stale(q) | Shortfall::Unavailable(q) => {
                        q.emit();
                        LockError::NoQuorum(q)
                    }
                });
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// One Redlock round with a proposed fence: take, grant or give back.
    async fn attempt(&self, keys: &LockKeys, ttl_ms: u64, owner: &str) -> Result<Grant, Shortfall> {
        let started = Instant::now();
        let token = new_token();
        let limit = self.acquire_limit(ttl_ms);
        let proposal = self.hints.get(&keys.fence) + 1;
        let answers = self
            .on_all(|node| {
                let token = &token;
                async move {
                    calls::locks::acquire(&node, limit, keys, token, ttl_ms, owner, proposal).await
                }
            })
            .await;
        let required = self.required();
        let mut counted = 0;
        let (mut held_elsewhere, mut stale) = (false, false);
        let mut failures = Vec::new();
        let mut highest = 0u64;
        // Nodes that did not clearly refuse may hold the key (a timed-out SET can still land).
        let mut maybe_taken = Vec::new();
        for (node, answer) in &answers {
            match answer {
                Ok(Taken::Granted) => {
                    maybe_taken.push(*node);
                    if self.counts(*node, keys) {
                        counted += 1;
                    } else {
                        failures.push(failure(&self.pool, *node, self.not_counted_reason(*node)));
                    }
                }
                Ok(Taken::Held(counter)) => {
                    highest = highest.max(*counter);
                    held_elsewhere = true;
                    failures.push(failure(
                        &self.pool,
                        *node,
                        FailureCause::NotCounted("held by another owner".into()),
                    ));
                }
                Ok(Taken::Stale(counter)) => {
                    highest = highest.max(*counter);
                    stale = true;
                    failures.push(failure(
                        &self.pool,
                        *node,
                        FailureCause::NotCounted(format!(
                            "proposed fence {proposal} is not above its counter {counter}"
                        )),
                    ));
                }
                Err(e) => {
                    maybe_taken.push(*node);
                    failures.push(failure(&self.pool, *node, e.clone()));
                }
            }
        }
        if !maybe_taken.is_empty() {
            // Those nodes' counters are (or may soon be) the proposal.
            highest = highest.max(proposal);
        }
        self.hints.raise(&keys.fence, highest);
        let validity = validity_ms(&self.cfg, ttl_ms, started.elapsed());
        if let Some(validity_ms) = validity.filter(|_| counted >= required) {
            return Ok(Grant {
                token,
                fence: proposal,
                validity_ms,
            });
        }
        self.give_back(keys, &token, &maybe_taken).await;
        if counted >= required {
            let slow = Self::too_slow("lock acquire", required, counted, ttl_ms);
            return Err(Shortfall::Unavailable(slow));
        } else if held_elsewhere {
            return Err(Shortfall::Held);
        }
        let shortfall = QuorumError {
            operation: "lock acquire",
            required,
            succeeded: counted,
            failures,
        };
        Err(if stale && counted < required {
            Shortfall::Stale(shortfall)
        } else {
            Shortfall::Unavailable(shortfall)
        })
    }

    /// Releases `token` on `nodes`, ignoring failures (the keys expire by themselves).
    async fn give_back(&self, keys: &LockKeys, token: &str, nodes: &[NodeId]) {
        let limit = self.node_limit();
        self.on_all(|node| {
            let asked = nodes.contains(&node.id);
            async move {
                if asked {
                    calls::locks::release(&node, limit, keys, token).await
                } else {
                    Ok(false)
                }
            }
        })
        .await;
    }

    /// Extends user lock `name` held by `token` to `ttl_ms` from now.
    #[tracing::instrument(level = "debug", name = "locks.extend", skip_all, fields(name = name, ttl_ms))]
    pub async fn extend(&self, name: &str, token: &str, ttl_ms: u64) -> Result<Grant, LockError> {
        let result = match validate_name(name) {
            Ok(()) => {
                self.extend_keys(&self.user_keys(name), name, token, ttl_ms)
                    .await
            }
            Err(e) => Err(e),
        };
        counted("extend", result)
    }

    /// Extends the lock at `keys`. Succeeds only if `token` still holds a majority; nodes of the
    /// minority that lost the key (expired, restarted) are locked again with the same value.
    pub async fn extend_keys(
        &self,
        keys: &LockKeys,
        name: &str,
        token: &str,
        ttl_ms: u64,
    ) -> Result<Grant, LockError> {
        validate_token(token)?;
        self.validate_ttl(ttl_ms)?;
        let started = Instant::now();
        let limit = self.node_limit();
        let first = self
            .on_all(|node| async move {
                calls::locks::extend(&node, limit, keys, token, ttl_ms, "").await
            })
            .await;
        let required = self.required();
        let renewed: Vec<(NodeId, &String)> = first
            .iter()
            .filter_map(|(n, r)| match r {
                Ok(Extended::Renewed(v)) => Some((*n, v)),
                _ => None,
            })
            .collect();
        let counted = renewed
            .iter()
            .filter(|(n, _)| self.counts(*n, keys))
            .count();
        if counted < required {
            return Err(self.not_holder(&first, keys, name));
        }
        let value = renewed[0].1.clone();
        let fence = calls::locks::parse_value(&value)
            .and_then(|(_, _, f)| f)
            .unwrap_or(0);
        let lost: Vec<NodeId> = first
            .iter()
            .filter(|(_, r)| matches!(r, Ok(Extended::NotHeld)))
            .map(|(n, _)| *n)
            .collect();
        if !lost.is_empty() {
            self.on_all(|node| {
                let (keys, token, value) = (keys.clone(), token.to_string(), value.clone());
                let asked = lost.contains(&node.id);
                async move {
                    if !asked {
                        return Ok(Extended::NotHeld);
                    }
                    calls::locks::extend(&node, limit, &keys, &token, ttl_ms, &value).await
                }
            })
            .await;
        }
        match validity_ms(&self.cfg, ttl_ms, started.elapsed()) {
            Some(validity_ms) => Ok(Grant {
                token: token.to_string(),
                fence,
                validity_ms,
            }),
            // The token did hold it: saying otherwise sends the client after the wrong cause.
            None => Err(Self::too_slow("lock extend", required, counted, ttl_ms).into()),
        }
    }

    fn not_holder<T>(
        &self,
        answers: &[(NodeId, Result<T, NodeError>)],
        keys: &LockKeys,
        name: &str,
    ) -> LockError {
        let answered = answers
            .iter()
            .filter(|(n, r)| r.is_ok() && self.counts(*n, keys))
            .count();
        if answered >= self.required() {
            LockError::NotHolder {
                name: name.to_string(),
            }
        } else {
            LockError::NoQuorum(QuorumError {
                operation: "lock check",
                required: self.required(),
                succeeded: answered,
                failures: answers
                    .iter()
                    .filter_map(|(n, r)| {
                        r.as_ref().err().map(|e| failure(&self.pool, *n, e.clone()))
                    })
                    .collect(),
            })
        }
    }

    /// Releases user lock `name` held by `token`.
    #[tracing::instrument(level = "debug", name = "locks.release", skip_all, fields(name = name))]
    pub async fn release(&self, name: &str, token: &str) -> Result<(), LockError> {
        let result = match validate_name(name) {
            Ok(()) => self.release_keys(&self.user_keys(name), name, token).await,
            Err(e) => Err(e),
        };
        counted("release", result)
    }

    /// Deletes the lock wherever `token` holds it; an error unless it held a majority.
    pub async fn release_keys(
        &self,
        keys: &LockKeys,
        name: &str,
        token: &str,
    ) -> Result<(), LockError> {
        validate_token(token)?;
        let limit = self.node_limit();
        let answers = self
            .on_all(|node| async move { calls::locks::release(&node, limit, keys, token).await })
            .await;
        let released = answers
            .iter()
            .filter(|(n, r)| matches!(r, Ok(true)) && self.counts(*n, keys))
            .count();
        if released >= self.required() {
            Ok(())
        } else {
            Err(self.not_holder(&answers, keys, name))
        }
    }

    /// The state of user lock `name`.
    #[tracing::instrument(level = "debug", name = "locks.inspect", skip_all, fields(name = name))]
    pub async fn inspect(&self, name: &str) -> Result<LockState, LockError> {
        validate_name(name)?;
        let views = self.views(&self.user_keys(name)).await?;
        Ok(summarize(&views, self.required()).0)
    }

    /// Remaining ms of the lock at `keys` if `token` holds it on a majority.
    pub async fn holds(&self, keys: &LockKeys, name: &str, token: &str) -> Result<u64, LockError> {
        validate_token(token)?;
        let views = self.views(keys).await?;
        match summarize(&views, self.required()) {
            (state, Some(holder)) if holder == token => Ok(state.remaining_ms.unwrap_or(0)),
            _ => Err(LockError::NotHolder {
                name: name.to_string(),
            }),
        }
    }

    /// Counted nodes' views of a lock; a majority must answer.
    async fn views(&self, keys: &LockKeys) -> Result<Vec<NodeView>, LockError> {
        let limit = self.node_limit();
        let answers = self
            .on_all(|node| {
                let keys = keys.clone();
                async move { calls::locks::inspect(&node, limit, &keys).await }
            })
            .await;
        let mut views = Vec::new();
        let mut failures = Vec::new();
        for (node, r) in answers {
            match r {
                Ok(v) if self.counts(node, keys) => views.push(v),
                Ok(_) => failures.push(failure(&self.pool, node, self.not_counted_reason(node))),
                Err(e) => failures.push(failure(&self.pool, node, e)),
            }
        }
        if views.len() < self.required() {
            return Err(LockError::NoQuorum(QuorumError {
                operation: "lock inspect",
                required: self.required(),
                succeeded: views.len(),
                failures,
            }));
        }
        Ok(views)
    }
}

/// The lock's state from counted nodes' views, and the holder's token: held when one token is
/// on at least `required` of them.
fn summarize(views: &[NodeView], required: usize) -> (LockState, Option<String>) {
    let highest = views.iter().map(|v| v.fence_counter).max().unwrap_or(0);
    let mut tokens: Vec<&str> = views
        .iter()
        .filter_map(|v| v.value.as_deref().and_then(calls::locks::parse_value))
        .map(|(t, _, _)| t)
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    for token in tokens {
        let holding: Vec<&NodeView> = views
            .iter()
            .filter(|v| {
                v.value
                    .as_deref()
                    .and_then(calls::locks::parse_value)
                    .is_some_and(|(t, _, _)| t == token)
            })
            .collect();
        if holding.len() >= required {
            let (_, owner, fence) =
                calls::locks::parse_value(holding[0].value.as_deref().unwrap_or(""))
                    .unwrap_or_default();
            let remaining = holding.iter().map(|v| v.remaining_ms.max(0) as u64).min();
            return (
                LockState {
                    held: true,
                    owner: Some(owner.to_string()),
                    remaining_ms: remaining,
                    fence: fence.unwrap_or(highest),
                },
                Some(token.to_string()),
            );
        }
    }
    (
        LockState {
            held: false,
            owner: None,
            remaining_ms: None,
            fence: highest,
        },
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(value: Option<&str>, remaining_ms: i64, fence_counter: u64) -> NodeView {
        NodeView {
            value: value.map(str::to_string),
            remaining_ms,
            fence_counter,
        }
    }

    #[test]
    fn names_and_tokens_are_checked() {
        assert!(validate_name("orders:42.a-b_c").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"x".repeat(201)).is_err());
        assert!(validate_token(&"a".repeat(32)).is_ok());
        assert!(validate_token(&"A".repeat(32)).is_err());
        assert!(validate_token("abc").is_err());
    }

    #[test]
    fn validity_subtracts_elapsed_and_drift() {
        let cfg = LocksConfig::default();
        assert_eq!(drift_ms(&cfg, 10_000), 102);
        assert_eq!(
            validity_ms(&cfg, 10_000, Duration::from_micros(5_500)),
            Some(10_000 - 6 - 102)
        );
        assert_eq!(validity_ms(&cfg, 100, Duration::from_millis(97)), None);
    }

    #[test]
    fn held_only_when_one_token_is_on_a_majority() {
        let views = [
            view(Some("t1|me|5"), 900, 5),
            view(Some("t1|me|5"), 800, 5),
            view(Some("t2|you|"), 500, 4),
        ];
        let (state, holder) = summarize(&views, 2);
        assert_eq!(holder.as_deref(), Some("t1"));
        assert_eq!(
            state,
            LockState {
                held: true,
                owner: Some("me".into()),
                remaining_ms: Some(800),
                fence: 5
            }
        );
        let split = [
            view(Some("t1|a|3"), 1, 3),
            view(None, -2, 7),
            view(Some("t2|b|"), 1, 3),
        ];
        let (state, holder) = summarize(&split, 2);
        assert_eq!(holder, None);
        assert!(!state.held);
        assert_eq!(state.fence, 7);
    }
}
