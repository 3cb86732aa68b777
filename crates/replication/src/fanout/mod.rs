//! Quorum fan-out: send one operation to many nodes at once and return as soon as the quorum
//! is decided. Answers that arrive after the decision are not lost: they stay readable through
//! `Gathered::collect_stragglers`, which read repair and hint recording use.

pub mod events;

use futures::StreamExt;
use futures::stream::BoxStream;
use futures::stream::FuturesUnordered;
use quorumd_core::quorum::{Decision, QuorumTracker, majority};
use quorumd_node::pool::{Node, NodeError, NodeId, NodePool, ServerErrorKind};
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One node's answer.
#[derive(Debug)]
pub struct Reply<T> {
    pub node: NodeId,
    pub result: Result<T, NodeError>,
}

/// The answers that decided a fan-out, and the calls still outstanding.
pub struct Gathered<T: Send + 'static> {
    pub decision: Decision,
    pub replies: Vec<Reply<T>>,
    pub required: usize,
    stragglers: Outstanding<T>,
}

impl<T: Send + 'static> Gathered<T> {
    /// A fan-out decided by `replies` alone, with nothing outstanding.
    #[cfg(test)]
    fn answered(decision: Decision, replies: Vec<Reply<T>>, required: usize) -> Gathered<T> {
        Gathered {
            decision,
            replies,
            required,
            stragglers: Outstanding::default(),
        }
    }

    /// Whether every node asked has answered: nothing is left for `collect_stragglers`.
    pub fn all_answered(&self) -> bool {
        self.stragglers.left == 0
    }

    /// The successful answers that counted.
    pub fn successes(&self) -> impl Iterator<Item = (NodeId, &T)> + Clone {
        self.replies
            .iter()
            .filter_map(|r| r.result.as_ref().ok().map(|v| (r.node, v)))
    }

    /// Waits for the answers still outstanding (each bounded by the node timeout), in the
    /// caller's task.
    pub async fn collect_stragglers(&mut self) -> Vec<Reply<T>> {
        let mut rest = Vec::with_capacity(self.stragglers.left);
        while let Some(r) = self.stragglers.next().await {
            rest.push(r);
        }
        rest
    }

    /// The successful answers received by the decision; the calls still outstanding are
    /// driven to the end in the background.
    pub fn into_successes(self) -> impl Iterator<Item = (NodeId, T)> {
        self.replies
            .into_iter()
            .filter_map(|r| r.result.ok().map(|v| (r.node, v)))
    }

    /// Every successful answer, the stragglers' included: what read repair compares.
    pub async fn into_all_answers(mut self) -> Vec<(NodeId, T)> {
        let late = self.collect_stragglers().await;
        self.replies.extend(late);
        self.into_successes().collect()
    }

    /// A read's second phase (ABD): which of the `nodes` must be written so that a majority
    /// holds what the read returns, given which answers already hold it; `None` when a
    /// majority already does.
    pub fn write_back_plan(&self, nodes: usize, holds: impl Fn(&T) -> bool) -> Option<WriteBack> {
        let holders: Vec<NodeId> = self
            .successes()
            .filter(|(_, v)| holds(v))
            .map(|(n, _)| n)
            .collect();
        let needed = majority(nodes).saturating_sub(holders.len());
        (needed > 0).then(|| WriteBack {
            targets: (0..nodes).filter(|n| !holders.contains(n)).collect(),
            needed,
        })
    }
}

/// The nodes a read writes back to, and how many of them must acknowledge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBack {
    pub targets: Vec<NodeId>,
    pub needed: usize,
}

/// Sends `op` to every node in `targets` concurrently. Returns once `required` answers satisfy
/// `counts` (given the answering node), or once that has become impossible.
///
/// The node calls are polled in the caller's task until the quorum is decided; the calls still
/// outstanding then travel in the `Gathered`, whose reader (read repair, hint recording) polls
/// them in its own task. Why not a task per node, or one forwarding task: on the request path
/// that was three spawns, or one spawn and a channel, per operation for what is mostly waiting
/// on a oneshot (issue 16). A node call is queued when it is created, so it reaches its node
/// whether or not anyone polls it; what is dropped unread is driven to the end by one
/// background task, so a call's own bookkeeping (its timeout, its node's health) still happens,
/// also when the caller itself is dropped before the decision (a request past its deadline, a
/// client gone).
pub async fn fan_out<T, F, Fut>(
    pool: &NodePool,
    targets: impl IntoIterator<Item = NodeId>,
    required: usize,
    counts: impl Fn(NodeId, &T) -> bool,
    op: F,
) -> Gathered<T>
where
    T: Send + 'static,
    F: Fn(Arc<Node>) -> Fut,
    Fut: Future<Output = Result<T, NodeError>> + Send + 'static,
{
    fan_out_in_waves(
        pool,
        targets,
        Vec::new(),
        Duration::MAX,
        required,
        counts,
        op,
    )
    .await
}

/// Like [`fan_out`], but asks `first` at once and `rest` only when it must: as soon as one
/// answer fails or does not count, every call of the first wave has answered, or `hedge` has
/// passed without a decision. A read asks as many nodes as it needs that way, and a slow node
/// among them costs it `hedge`, not the node timeout.
pub async fn fan_out_in_waves<T, F, Fut>(
    pool: &NodePool,
    first: impl IntoIterator<Item = NodeId>,
    rest: Vec<NodeId>,
    hedge: Duration,
    required: usize,
    counts: impl Fn(NodeId, &T) -> bool,
    op: F,
) -> Gathered<T>
where
    T: Send + 'static,
    F: Fn(Arc<Node>) -> Fut,
    Fut: Future<Output = Result<T, NodeError>> + Send + 'static,
{
    let call = |id: NodeId| {
        let fut = op(pool.node(id).clone());
        async move {
            Reply {
                node: id,
                result: fut.await,
            }
        }
    };
    let mut pending = DriveOnDrop(first.into_iter().map(call).collect());
    let asked = pending.0.len() + rest.len();
    let mut rest = Some(rest).filter(|r| !r.is_empty());
    // Only armed when there is a second wave: an ordinary fan-out sets no timer.
    let hedge_at = rest
        .as_ref()
        .and_then(|_| tokio::time::Instant::now().checked_add(hedge));
    let mut tracker = QuorumTracker::new(required, asked);
    let mut replies = Vec::with_capacity(asked);
    let mut decision = tracker.decision();
    while decision == Decision::Pending {
        let next = tokio::select! {
            biased;
            next = pending.0.next() => next,
            // No answer yet means asking the rest, like an exhausted first wave.
            () = sleep_until_or_never(hedge_at), if rest.is_some() => None,
        };
        let reply = match next {
            Some(reply) => reply,
            None => match rest.take() {
                Some(r) => {
                    pending.0.extend(r.into_iter().map(call));
                    continue;
                }
                None => break,
            },
        };
        let ok = reply.result.as_ref().is_ok_and(|v| counts(reply.node, v));
        if !ok && let Some(r) = rest.take() {
            pending.0.extend(r.into_iter().map(call));
        }
        decision = tracker.record(ok);
        replies.push(reply);
    }
    if decision == Decision::Pending {
        decision = Decision::Impossible;
    }
    Gathered {
        decision,
        replies,
        required,
        stragglers: Outstanding::new(std::mem::take(&mut pending.0)),
    }
}

async fn sleep_until_or_never(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The node calls of a fan-out that have not answered yet (boxed only when there are some).
/// Dropped unread, it drives them to the end in one background task.
struct Outstanding<T: Send + 'static> {
    /// Only ever reached through `&mut self` (`Mutex::get_mut`, which takes no lock): the
    /// mutex is there so that a `Gathered` is `Sync` (futures holding one across an `.await`
    /// must be) although the node calls are not.
    calls: Mutex<Option<BoxStream<'static, Reply<T>>>>,
    left: usize,
}

impl<T: Send + 'static> Default for Outstanding<T> {
    fn default() -> Self {
        Outstanding {
            calls: Mutex::new(None),
            left: 0,
        }
    }
}

impl<T: Send + 'static> Outstanding<T> {
    fn new<C>(calls: FuturesUnordered<C>) -> Self
    where
        C: Future<Output = Reply<T>> + Send + 'static,
    {
        let left = calls.len();
        if left == 0 {
            return Outstanding::default();
        }
        Outstanding {
            calls: Mutex::new(Some(Box::pin(calls))),
            left,
        }
    }

    fn calls(&mut self) -> &mut Option<BoxStream<'static, Reply<T>>> {
        self.calls.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    async fn next(&mut self) -> Option<Reply<T>> {
        let reply = self.calls().as_mut()?.next().await;
        match reply {
            Some(_) => self.left -= 1,
            None => *self.calls() = None,
        }
        reply
    }
}

impl<T: Send + 'static> Drop for Outstanding<T> {
    fn drop(&mut self) {
        if let Some(calls) = self.calls().take()
            && self.left > 0
        {
            drive_to_the_end(calls);
        }
    }
}

/// The calls of a fan-out still deciding: when its caller drops it (a request past its
/// deadline, a client gone), they are driven to the end all the same.
struct DriveOnDrop<C: Future + Send + 'static>(FuturesUnordered<C>)
where
    C::Output: Send;

impl<C: Future + Send + 'static> Drop for DriveOnDrop<C>
where
    C::Output: Send,
{
    fn drop(&mut self) {
        if !self.0.is_empty() {
            drive_to_the_end(std::mem::take(&mut self.0));
        }
    }
}

/// Polls `calls` to their end in a background task, dropping their answers.
fn drive_to_the_end<S: futures::Stream + Send + Unpin + 'static>(mut calls: S) {
    // Without a runtime (the process is ending) there is nothing left to drive them.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move { while calls.next().await.is_some() {} });
    }
}

/// One node's part in a failed quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeFailure {
    pub node: String,
    /// Shown as the `reason` text the API has always carried.
    #[serde(rename = "reason", serialize_with = "serialize_as_text")]
    pub cause: FailureCause,
}

impl NodeFailure {
    pub fn new(node: impl Into<String>, cause: impl Into<FailureCause>) -> NodeFailure {
        NodeFailure {
            node: node.into(),
            cause: cause.into(),
        }
    }
}

/// Why a node's answer is missing from a quorum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureCause {
    /// The node failed: no answer, or an error reply.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The node answered, but the answer does not count toward this quorum (the node is
    /// recovering, the lock is held by another owner, ...), in words for the operator.
    #[error("{0}")]
    NotCounted(String),
}

impl FailureCause {
    /// The kind of error reply, when the node answered with one.
    pub fn server_kind(&self) -> Option<&ServerErrorKind> {
        match self {
            FailureCause::Node(e) => e.server_kind(),
            FailureCause::NotCounted(_) => None,
        }
    }
}

fn serialize_as_text<S: serde::Serializer>(cause: &FailureCause, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(cause)
}

/// An operation that did not reach its quorum, naming every node that failed and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct QuorumError {
    pub operation: &'static str,
    pub required: usize,
    pub succeeded: usize,
    pub failures: Vec<NodeFailure>,
}

impl fmt::Display for QuorumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} of {} required nodes succeeded",
            self.operation, self.succeeded, self.required
        )?;
        for (i, n) in self.failures.iter().enumerate() {
            f.write_str(if i == 0 { "; " } else { ", " })?;
            write!(f, "{}: {}", n.node, n.cause)?;
        }
        // A node that gave no answer may have done what it was asked: a client must not take
        // a failed write for one that changed nothing.
        match self.unanswered() {
            0 => Ok(()),
            1 => f.write_str(" (the node that gave no answer may have applied it)"),
            n => write!(
                f,
                " (the {n} nodes that gave no answer may have applied it)"
            ),
        }
    }
}

impl QuorumError {
    /// Builds the error from the answers of a fan-out that did not reach its quorum, once every
    /// node asked has answered (each bounded by the node timeout): a fan-out decides as soon as
    /// the quorum is out of reach, often on its first failure, and the nodes that answer after
    /// it would otherwise be missing from the count ("0 of 3 succeeded" for a write two nodes
    /// applied). Nodes whose answer was a success but did not count are described by
    /// `why_not_counted`.
    pub async fn from_gathered<T: Send + 'static>(
        operation: &'static str,
        pool: &NodePool,
        g: &mut Gathered<T>,
        counts: impl Fn(NodeId, &T) -> bool,
        why_not_counted: impl Fn(&T) -> String,
    ) -> QuorumError {
        let late = g.collect_stragglers().await;
        g.replies.extend(late);
        let mut succeeded = 0;
        let mut failures = Vec::new();
        for r in &g.replies {
            let cause = match &r.result {
                Ok(v) if counts(r.node, v) => {
                    succeeded += 1;
                    continue;
                }
                Ok(v) => FailureCause::NotCounted(why_not_counted(v)),
                Err(e) => FailureCause::Node(e.clone()),
            };
            failures.push(NodeFailure::new(pool.node(r.node).display.clone(), cause));
        }
        let err = QuorumError {
            operation,
            required: g.required,
            succeeded,
            failures,
        };
        err.emit();
        err
    }

    /// How many of the failed nodes gave no answer (timed out, or the connection broke while
    /// waiting): what was asked may have happened there.
    pub fn unanswered(&self) -> usize {
        self.failures
            .iter()
            .filter(|f| {
                matches!(
                    f.cause,
                    FailureCause::Node(NodeError::Timeout(_) | NodeError::Connection(_))
                )
            })
            .count()
    }

    /// Whether every node that failed refused with an error reply of `kind` (and at least one
    /// did): the quorum failed because of what the key holds, not because nodes are missing.
    pub fn all_refused_with(&self, kind: &ServerErrorKind) -> bool {
        !self.failures.is_empty()
            && self
                .failures
                .iter()
                .all(|f| f.cause.server_kind() == Some(kind))
    }

    /// Whether at least one node refused with `kind` (the others may have failed otherwise,
    /// e.g. a node down).
    pub fn any_refused_with(&self, kind: &ServerErrorKind) -> bool {
        self.failures
            .iter()
            .any(|f| f.cause.server_kind() == Some(kind))
    }

    /// Logs the failure (the `quorum not reached` event).
    pub fn emit(&self) {
        let failures = self
            .failures
            .iter()
            .map(|f| format!("{}: {}", f.node, f.cause))
            .collect::<Vec<_>>()
            .join("; ");
        events::QuorumFailed {
            operation: self.operation,
            required: self.required,
            succeeded: self.succeeded,
            failures: &failures,
        }
        .emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumd_node::pool::ServerError;

    fn refused(code: &str) -> FailureCause {
        FailureCause::Node(NodeError::Server(ServerError::from_reply_text(&format!(
            "{code} some words"
        ))))
    }

    fn quorum_error(causes: Vec<FailureCause>) -> QuorumError {
        QuorumError {
            operation: "write",
            required: 2,
            succeeded: 0,
            failures: causes
                .into_iter()
                .enumerate()
                .map(|(i, c)| NodeFailure::new(format!("node{i}"), c))
                .collect(),
        }
    }

    fn gathered(answers: &[(NodeId, u32)]) -> Gathered<u32> {
        let replies = answers
            .iter()
            .map(|&(node, v)| Reply {
                node,
                result: Ok(v),
            })
            .collect();
        Gathered::answered(Decision::Reached, replies, 2)
    }

    #[test]
    fn write_back_reaches_a_majority_through_the_nodes_without_the_answer() {
        let g = gathered(&[(0, 7), (1, 5)]);
        assert_eq!(
            g.write_back_plan(5, |v| *v == 7),
            Some(WriteBack {
                targets: vec![1, 2, 3, 4],
                needed: 2
            })
        );
        assert_eq!(
            gathered(&[(0, 7), (2, 7)]).write_back_plan(3, |v| *v == 7),
            None
        );
    }

    #[test]
    fn failures_serialize_with_the_reason_text() {
        let f = NodeFailure::new("redis://n1", NodeError::Timeout(250));
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            serde_json::json!({"node": "redis://n1", "reason": "timed out after 250 ms"})
        );
        let q = quorum_error(vec![FailureCause::NotCounted("recovering".into())]);
        assert_eq!(
            q.to_string(),
            "write: 0 of 2 required nodes succeeded; node0: recovering"
        );
    }

    #[test]
    fn refusal_by_kind_needs_every_failure_to_be_that_kind() {
        let wrong_type = ServerErrorKind::WrongType;
        assert!(
            quorum_error(vec![refused("WRONGTYPE"), refused("WRONGTYPE")])
                .all_refused_with(&wrong_type)
        );
        assert!(
            !quorum_error(vec![refused("WRONGTYPE"), refused("OOM")]).all_refused_with(&wrong_type)
        );
        assert!(
            !quorum_error(vec![
                refused("WRONGTYPE"),
                FailureCause::Node(NodeError::Timeout(1))
            ])
            .all_refused_with(&wrong_type)
        );
        assert!(!quorum_error(vec![]).all_refused_with(&wrong_type));
    }
}
