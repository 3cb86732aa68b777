//! Linearizability checker for a single read/write register.
//!
//! Implements the Wing & Gong backtracking search with Lowe's memoization ("WGL", the algorithm
//! behind Knossos and Porcupine). The history becomes a time-ordered list of call and return
//! events. The search repeatedly takes an op whose call comes before the first return still in
//! the list (so no pending op must precede it), applies it to the register, and removes its
//! events. When it reaches a return whose op is not yet linearized, it backtracks. A cache of
//! (linearized-op bitset, register value) configurations that were already explored stops the
//! search from redoing work.
//!
//! Ops whose outcome is unknown need special care:
//! * A write that got an error or timeout may have been applied on some replicas. It may take
//!   effect at any instant after its invocation, or never. It is modelled with a return at
//!   +infinity and does not have to be linearized: the search succeeds once every op with a known
//!   outcome is linearized.
//! * A read that got no response observed nothing, so it is dropped.
//!
//! Plain WGL gets slow when a failing history has high concurrency and many timeouts, because
//! it has to rule out every interleaving before the violation. Three reductions keep the
//! search small. Each one keeps at least one linearization, if any exists (proofs at the
//! functions):
//! * a read that matches the current value is taken at once, with no branching
//!   (`Searcher::matching_read`);
//! * a write with unknown outcome is tried only right before a read of its value, and only one
//!   of several identical pending ones (`Searcher::unknown_write_is_useful`);
//! * a configuration is skipped if an explored one differs only by having consumed fewer
//!   unknown writes (`Searcher::enter`).
//!
//! The search also records how far it got. When it fails, that is exactly where the smallest
//! failing prefix of the history ends, so the explanation needs no second search
//! (`explain_violation`).
//!
//! The module is pure: no I/O, no dependencies beyond `std`, and no panics on any input.

use std::collections::HashMap;
use std::fmt::Write as _;

/// Value a register holds: `None` = absent (never written or deleted).
pub type RegValue = Option<u64>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Write of a value (`None` = delete).
    Write(RegValue),
    /// Read that observed a value.
    Read(RegValue),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Used only to label ops in explanations. Each client is expected to have at most one op
    /// in flight, but the checker does not rely on that.
    pub client: usize,
    pub kind: OpKind,
    /// Monotonic time the request was sent (any unit, e.g. ns since test start).
    pub invoked: u64,
    /// Monotonic time the response arrived; `None` = outcome unknown (error/timeout).
    pub completed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// Not linearizable; carries a human-readable explanation that names the smallest prefix of the
    /// history (by completion time) that could not be linearized and the ops involved.
    Violation(String),
    /// Search gave up after the configured step budget (treat as a test failure with explanation).
    Inconclusive(String),
}

/// Step budget used by [`check`]. A few hundred ops with up to ten clients need far fewer steps.
/// The cap bounds time and memory on adversarial input, since each step can add one cache entry.
pub const DEFAULT_MAX_STEPS: u64 = 3_000_000;

/// Checks `history` against a register that starts out holding `initial`.
/// Uses [`DEFAULT_MAX_STEPS`] as the budget.
///
/// See [`check_with_budget`] for how invalid input is handled.
pub fn check(initial: RegValue, history: &[Op]) -> Verdict {
    check_with_budget(initial, history, DEFAULT_MAX_STEPS)
}

/// Checks `history` against a register that starts out holding `initial`.
/// Gives up with [`Verdict::Inconclusive`] after `max_steps` search steps. A step is one attempt
/// to linearize one op.
///
/// The order of `history` does not matter. Indices into it are used to name ops in messages.
///
/// Invalid input is an op with `completed < invoked`. No real execution can produce it, so it
/// points to a bug in the harness that recorded the history. The result is a
/// [`Verdict::Violation`] whose message starts with `invalid history` and names the bad ops.
pub fn check_with_budget(initial: RegValue, history: &[Op], max_steps: u64) -> Verdict {
    if let Some(problem) = describe_invalid_ops(history) {
        return Verdict::Violation(problem);
    }
    let ops = prepare(history);
    let outcome = search(initial, &ops, max_steps);
    match (outcome.result, outcome.frontier) {
        (SearchResult::Linearizable, _) => Verdict::Linearizable,
        (SearchResult::NotLinearizable, Some(cutoff)) => {
            Verdict::Violation(explain_violation(initial, history, cutoff))
        }
        // Unreachable: a failed search always got stuck at some op's return.
        (SearchResult::NotLinearizable, None) => {
            Verdict::Violation("not linearizable (no blocking op identified)".to_string())
        }
        (SearchResult::BudgetExhausted, frontier) => {
            let mut msg = format!(
                "linearizability search gave up after {} steps (budget {max_steps}) on a \
                 history of {} ops ({} of them writes with unknown outcome); neither a \
                 linearization nor a proof of violation was found. Check a shorter history or \
                 raise the budget.",
                outcome.steps,
                ops.len(),
                ops.iter().filter(|op| op.completed.is_none()).count(),
            );
            if let Some(reached) = frontier {
                let _ = write!(
                    msg,
                    " Every prefix ending before t={reached} was shown to be linearizable."
                );
            }
            Verdict::Inconclusive(msg)
        }
    }
}

/// Describes every op whose response comes before its request, or returns `None` if there are
/// none.
fn describe_invalid_ops(history: &[Op]) -> Option<String> {
    const SHOWN: usize = 5;
    let bad: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, op)| op.completed.is_some_and(|c| c < op.invoked))
        .map(|(index, _)| index)
        .collect();
    if bad.is_empty() {
        return None;
    }
    let mut msg = format!(
        "invalid history: {} op(s) have completed < invoked, which no real execution can \
         produce (check the harness clock/recording):",
        bad.len()
    );
    for &index in bad.iter().take(SHOWN) {
        let _ = write!(msg, "\n  {}", describe_op(index, &history[index]));
    }
    if bad.len() > SHOWN {
        let _ = write!(msg, "\n  ... and {} more", bad.len() - SHOWN);
    }
    Some(msg)
}

/// An op as the search sees it.
#[derive(Debug, Clone)]
struct Prepared {
    kind: OpKind,
    invoked: u64,
    /// `None`: a write with unknown outcome (returns at +infinity, optional).
    completed: Option<u64>,
}

/// Turns the caller's history into the ops the search works on. Reads that got no response
/// observed nothing and are dropped. The rest is sorted by invocation time (stable, so ties
/// keep the caller's order). Then a lower index means an earlier invocation, which the handling
/// of unknown writes relies on.
fn prepare(history: &[Op]) -> Vec<Prepared> {
    let mut ops: Vec<Prepared> = history
        .iter()
        .filter(|op| op.completed.is_some() || matches!(op.kind, OpKind::Write(_)))
        .map(|op| Prepared {
            kind: op.kind.clone(),
            invoked: op.invoked,
            completed: op.completed,
        })
        .collect();
    ops.sort_by_key(|op| op.invoked);
    ops
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SearchResult {
    Linearizable,
    NotLinearizable,
    BudgetExhausted,
}

#[derive(Debug, Clone, Copy)]
struct SearchOutcome {
    result: SearchResult,
    /// Steps used. Tests use this to check that the search stays cheap.
    steps: u64,
    /// Latest completion time of an op at which the search got stuck, i.e. before which every
    /// op was linearized in some configuration. Once the search is exhausted, this is where the
    /// smallest failing prefix ends (see [`explain_violation`]).
    frontier: Option<u64>,
}

/// Marks the end of the linked event list.
const NIL: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Event {
    /// Index into the prepared ops.
    op: usize,
    is_call: bool,
    /// Node of the matching return (for a call) or call (for a return).
    partner: usize,
}

/// Doubly linked list of events ordered by time, with a head sentinel. Removing a linearized
/// op and restoring it when backtracking are O(1) ("dancing links").
struct EventList {
    events: Vec<Event>,
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
}

impl EventList {
    fn new(ops: &[Prepared]) -> Self {
        // Sort key: (time, call before return, op). Calls go first at equal times because ops
        // are ordered only if one completed strictly before the other was invoked. An unknown
        // outcome returns at +infinity, which is past every u64 time.
        let mut keyed: Vec<(u128, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            keyed.push((u128::from(op.invoked), false, i));
            keyed.push((op.completed.map_or(u128::MAX, u128::from), true, i));
        }
        keyed.sort_unstable();

        let mut call_node = vec![NIL; ops.len()];
        let mut return_node = vec![NIL; ops.len()];
        for (node, &(_, is_return, op)) in keyed.iter().enumerate() {
            if is_return {
                return_node[op] = node;
            } else {
                call_node[op] = node;
            }
        }
        let events: Vec<Event> = keyed
            .iter()
            .map(|&(_, is_return, op)| Event {
                op,
                is_call: !is_return,
                partner: if is_return {
                    call_node[op]
                } else {
                    return_node[op]
                },
            })
            .collect();

        let len = events.len();
        let head = len;
        // Nodes 0..len are events and node `len` is the head. Each node links to its
        // neighbours; the head's prev and the last node's next are NIL.
        let next: Vec<usize> = (0..=len)
            .map(|node| {
                if node == head {
                    if len == 0 { NIL } else { 0 }
                } else if node + 1 < len {
                    node + 1
                } else {
                    NIL
                }
            })
            .collect();
        let prev: Vec<usize> = (0..=len)
            .map(|node| {
                if node == head {
                    NIL
                } else if node == 0 {
                    head
                } else {
                    node - 1
                }
            })
            .collect();
        EventList {
            events,
            next,
            prev,
            head,
        }
    }

    fn first(&self) -> usize {
        self.next[self.head]
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    /// Reverses `unlink(node)`. This only works in LIFO order, because `node` still holds its
    /// old neighbours.
    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    /// Removes a call and its return from the list. The op is now linearized.
    fn lift(&mut self, call: usize) {
        let ret = self.events[call].partner;
        self.unlink(call);
        self.unlink(ret);
    }

    /// Undoes `lift(call)`. Must be called in reverse order of the lifts.
    fn unlift(&mut self, call: usize) {
        let ret = self.events[call].partner;
        self.relink(ret);
        self.relink(call);
    }
}

/// Fixed-size bitset indexed by an op's slot (see [`Searcher::slot`]).
struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    fn new(bits: usize) -> Self {
        Bitset {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    fn set(&mut self, bit: usize) {
        self.words[bit / 64] |= 1 << (bit % 64);
    }

    fn clear(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1 << (bit % 64));
    }
}

/// Runs the WGL search over prepared ops.
fn search(initial: RegValue, ops: &[Prepared], max_steps: u64) -> SearchOutcome {
    Searcher::new(initial, ops, max_steps).run()
}

/// Which ops the scan of a configuration is trying. Writes with a known outcome are tried
/// before writes with unknown outcome. That way the configurations that use fewer optional
/// writes are explored first, and they make the ones using more redundant (see
/// [`Searcher::enter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    KnownWrites,
    UnknownWrites,
}

/// How an op on the search path was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    /// A read taken without branching (see [`Searcher::matching_read`]). The configuration it
    /// was taken in has no other choices worth trying.
    ForcedRead,
    /// Tried by the scan in this pass, which resumes after it on backtrack.
    Scan(Pass),
}

/// One linearized op on the search path.
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Call node that was lifted.
    call: usize,
    /// Register value before the op.
    state_before: RegValue,
    choice: Choice,
}

/// State of one WGL search. It returns as soon as it finds a linearization of all ops with a
/// known outcome. Writes with unknown outcome can be left out: leaving one out is the same as
/// applying it after everything else.
struct Searcher<'a> {
    ops: &'a [Prepared],
    list: EventList,
    /// Each op's bit in `linearized` (ops with a known outcome) or `consumed` (the others).
    slot: Vec<usize>,
    linearized: Bitset,
    consumed: Bitset,
    /// Configurations already entered: (linearized ops, register value) mapped to the sets of
    /// consumed unknown writes they were entered with. The search returns on the first
    /// success, so each of them is a dead end.
    explored: HashMap<Box<[u64]>, Vec<Box<[u64]>>>,
    /// Scratch lookup key: the `linearized` words plus two words for the value.
    key: Vec<u64>,
    path: Vec<Frame>,
    state: RegValue,
    /// Ops with a known outcome that are not linearized yet.
    unresolved: usize,
    steps: u64,
    max_steps: u64,
    frontier: Option<u64>,
}

impl<'a> Searcher<'a> {
    fn new(initial: RegValue, ops: &'a [Prepared], max_steps: u64) -> Self {
        let mut known = 0;
        let mut unknown = 0;
        let slot = ops
            .iter()
            .map(|op| {
                let counter = if op.completed.is_some() {
                    &mut known
                } else {
                    &mut unknown
                };
                *counter += 1;
                *counter - 1
            })
            .collect();
        let linearized = Bitset::new(known);
        let key = Vec::with_capacity(linearized.words.len() + 2);
        Searcher {
            ops,
            list: EventList::new(ops),
            slot,
            linearized,
            consumed: Bitset::new(unknown),
            explored: HashMap::new(),
            key,
            path: Vec::new(),
            state: initial,
            unresolved: known,
            steps: 0,
            max_steps,
            frontier: None,
        }
    }

    fn outcome(&self, result: SearchResult) -> SearchOutcome {
        SearchOutcome {
            result,
            steps: self.steps,
            frontier: self.frontier,
        }
    }

    fn run(mut self) -> SearchOutcome {
        // `Some((node, pass))` resumes the scan of the current configuration after a
        // backtrack. `None` means a configuration was just entered.
        let mut resume: Option<(usize, Pass)> = None;
        loop {
            let (mut node, mut pass) = match resume.take() {
                Some(position) => position,
                None => {
                    if self.unresolved == 0 {
                        return self.outcome(SearchResult::Linearizable);
                    }
                    if let Some(read) = self.matching_read() {
                        if !self.take_step() {
                            return self.outcome(SearchResult::BudgetExhausted);
                        }
                        if self.enter(read, Choice::ForcedRead) {
                            continue;
                        }
                        // The read is a safe first move and leads to a known dead end, so
                        // this whole configuration is one.
                        match self.backtrack() {
                            Some(position) => {
                                resume = Some(position);
                                continue;
                            }
                            None => return self.outcome(SearchResult::NotLinearizable),
                        }
                    }
                    (self.list.first(), Pass::KnownWrites)
                }
            };

            // No read fits the current value, so the next op must be a write. Try each write
            // that may go next: the ops whose call comes before the first return in the list.
            loop {
                if node == NIL || !self.list.events[node].is_call {
                    if pass == Pass::KnownWrites {
                        pass = Pass::UnknownWrites;
                        node = self.list.first();
                        continue;
                    }
                    // This return is the first in the list and its op is not linearized.
                    // Every op that completed earlier is.
                    if let Some(blocked_at) = self
                        .list
                        .events
                        .get(node)
                        .and_then(|event| self.ops[event.op].completed)
                    {
                        self.frontier = self.frontier.max(Some(blocked_at));
                    }
                    match self.backtrack() {
                        Some(position) => resume = Some(position),
                        None => return self.outcome(SearchResult::NotLinearizable),
                    }
                    break;
                }
                let op = self.list.events[node].op;
                let worth_trying = match (pass, &self.ops[op].kind, self.ops[op].completed) {
                    (Pass::KnownWrites, OpKind::Write(_), Some(_)) => true,
                    (Pass::UnknownWrites, OpKind::Write(value), None) => {
                        self.unknown_write_is_useful(op, *value)
                    }
                    // Reads here cannot be applied: none matches the current value.
                    _ => false,
                };
                if worth_trying {
                    if !self.take_step() {
                        return self.outcome(SearchResult::BudgetExhausted);
                    }
                    if self.enter(node, Choice::Scan(pass)) {
                        break;
                    }
                }
                node = self.list.next[node];
            }
        }
    }

    /// Counts one step. Returns false if the budget is used up.
    fn take_step(&mut self) -> bool {
        if self.steps >= self.max_steps {
            return false;
        }
        self.steps += 1;
        true
    }

    fn mark(&mut self, op: usize, on: bool) {
        let bits = if self.ops[op].completed.is_some() {
            &mut self.linearized
        } else {
            &mut self.consumed
        };
        if on {
            bits.set(self.slot[op]);
        } else {
            bits.clear(self.slot[op]);
        }
    }

    /// Linearizes the op at call node `call` next, unless that leads to a configuration known
    /// to be a dead end. Returns whether it moved. The caller makes sure the op can be applied.
    ///
    /// A configuration is a dead end if an explored one had the same linearized ops and value
    /// and consumed only a subset of its unknown writes. Any way to finish from the new
    /// configuration also works from the old one, which has at least the same unknown writes
    /// left. This subsumes the plain WGL cache, which only catches equal sets.
    fn enter(&mut self, call: usize, choice: Choice) -> bool {
        let op = self.list.events[call].op;
        let new_state = match self.ops[op].kind {
            OpKind::Write(value) => value,
            OpKind::Read(_) => self.state,
        };
        self.mark(op, true);
        self.key.clear();
        self.key.extend_from_slice(&self.linearized.words);
        self.key.extend_from_slice(&value_words(new_state));
        let consumed = &self.consumed.words;
        match self.explored.get_mut(self.key.as_slice()) {
            Some(seen) => {
                if seen.iter().any(|old| is_subset(old, consumed)) {
                    self.mark(op, false);
                    return false;
                }
                // Sets that contain the new one are dominated by it from now on.
                seen.retain(|old| !is_subset(consumed, old));
                seen.push(consumed.as_slice().into());
            }
            None => {
                self.explored
                    .insert(self.key.as_slice().into(), vec![consumed.as_slice().into()]);
            }
        }
        self.path.push(Frame {
            call,
            state_before: self.state,
            choice,
        });
        self.state = new_state;
        if self.ops[op].completed.is_some() {
            self.unresolved -= 1;
        }
        self.list.lift(call);
        true
    }

    /// Undoes linearized ops until a configuration with choices left is reached. Returns where
    /// its scan goes on: the node after the one that was tried, and the pass. Returns `None`
    /// when there is nothing left to try.
    fn backtrack(&mut self) -> Option<(usize, Pass)> {
        while let Some(frame) = self.path.pop() {
            let op = self.list.events[frame.call].op;
            self.mark(op, false);
            if self.ops[op].completed.is_some() {
                self.unresolved += 1;
            }
            self.state = frame.state_before;
            self.list.unlift(frame.call);
            if let Choice::Scan(pass) = frame.choice {
                return Some((self.list.next[frame.call], pass));
            }
        }
        None
    }

    /// Finds a read that may go next and saw the current value.
    ///
    /// Taking such a read right away, with no other branch, loses no linearization. Take any
    /// valid way to finish from here and move the read to the front. It sees the same value.
    /// No op it must follow in real time is still pending, since it may go next. Reads do not
    /// change the value, so every other op still sees what it saw. This removes all branching
    /// over how reads interleave, which is where most of the search space comes from.
    fn matching_read(&self) -> Option<usize> {
        let mut node = self.list.first();
        while node != NIL && self.list.events[node].is_call {
            let op = &self.ops[self.list.events[node].op];
            if op.completed.is_some() && op.kind == OpKind::Read(self.state) {
                return Some(node);
            }
            node = self.list.next[node];
        }
        None
    }

    /// Decides whether linearizing `ops[write]`, a write of `value` with unknown outcome, next
    /// can help. Without this check, the search would try every order of every pending unknown
    /// write, and the number of configurations would grow exponentially with the number of
    /// timeouts.
    ///
    /// Why it is safe to skip the write:
    /// * Take any valid linearization that contains such a write `w` of value `v`. If the next
    ///   op is not a read of `v`, that op is a write, or nothing follows (a read of anything
    ///   else would be invalid). Either way `w` can be removed and every other op still sees
    ///   the same value. If the register already holds `v`, `w` changes nothing and can also
    ///   be removed. Removing `w` never breaks real-time order, and `w` is optional. So only
    ///   one case needs to be searched: `w` applied right before a read of `v` that can go
    ///   next. After `w` is lifted, the ops that can go next are the current ones minus `w`,
    ///   because `w` returns at +infinity and is never the first return in the list.
    /// * Two pending unknown writes of the same value are interchangeable from here on: both
    ///   are already invoked and neither ever returns. Only the one with the lower index is
    ///   tried. That is the one invoked first (see [`prepare`]), so the consumed writes of
    ///   each value are always the earliest ones. Consumed sets then tend to be nested, which
    ///   is what the subset check in [`Searcher::enter`] needs.
    fn unknown_write_is_useful(&self, write: usize, value: RegValue) -> bool {
        if value == self.state {
            return false;
        }
        let mut read_can_follow = false;
        let mut node = self.list.first();
        while node != NIL && self.list.events[node].is_call {
            let other = self.list.events[node].op;
            let candidate = &self.ops[other];
            match (&candidate.kind, candidate.completed) {
                (OpKind::Read(seen), Some(_)) if *seen == value => read_can_follow = true,
                (OpKind::Write(twin), None) if *twin == value && other < write => return false,
                _ => {}
            }
            node = self.list.next[node];
        }
        read_can_follow
    }
}

/// Whether every bit set in `small` is also set in `big`. Both have the same length.
fn is_subset(small: &[u64], big: &[u64]) -> bool {
    small.iter().zip(big).all(|(s, b)| s & !b == 0)
}

/// Encodes a register value for the cache key. The tag keeps `None` apart from `Some(0)`.
fn value_words(value: RegValue) -> [u64; 2] {
    match value {
        None => [0, 0],
        Some(v) => [1, v],
    }
}

/// Builds the message for a history that cannot be linearized. `cutoff` is the search frontier:
/// the latest completion time that the search was ever blocked at.
///
/// Why that is the end of the smallest failing prefix: for a time `t`, the prefix is the
/// history as seen at `t`. Ops completed by `t` keep their outcome, writes still pending become
/// writes with unknown outcome, and pending reads are dropped. That prefix can be linearized
/// exactly when the full search reaches a configuration in which every op completed by `t` is
/// linearized. Reads completing later can be dropped from such a path and writes completing
/// later are optional in the prefix. In the other direction, a linearization of the prefix is
/// a valid path of the full search. A configuration stops at its first unlinearized return, so
/// the search covers every `t` below the frontier and none at or above it.
fn explain_violation(initial: RegValue, history: &[Op], cutoff: u64) -> String {
    let completed_in_prefix = history
        .iter()
        .filter(|op| op.completed.is_some_and(|c| c <= cutoff))
        .count();
    let completed_total = history.iter().filter(|op| op.completed.is_some()).count();
    let before = history
        .iter()
        .filter_map(|op| op.completed)
        .filter(|&c| c < cutoff)
        .max();

    let mut msg = format!(
        "not linearizable (initial value {}): the smallest failing prefix of the history ends \
         at t={cutoff}, i.e. the first {completed_in_prefix} of {completed_total} completed ops \
         by completion time (plus writes of unknown outcome invoked by then). ",
        show_value(initial)
    );
    match before {
        Some(before) => {
            let _ = write!(
                msg,
                "The prefix up to t={before} is linearizable, so the op(s) completing at \
                 t={cutoff} cannot be ordered consistently with what happened before."
            );
        }
        None => msg.push_str("It ends with the first op(s) to complete."),
    }
    msg.push_str("\nops involved (#index in history, [invoked, completed]):");
    let (involved, omitted) = involved_ops(initial, history, cutoff);
    for (index, role) in involved {
        let _ = write!(
            msg,
            "\n  {}  <- {role}",
            describe_op(index, &history[index])
        );
    }
    if omitted > 0 {
        let _ = write!(msg, "\n  ... and {omitted} more");
    }
    msg
}

/// Picks the ops that explain a failure at `cutoff`: the ops that complete there, the ops that
/// overlap them, the last write that definitely came before them, and for reads the writes of
/// the value they saw. Results are in that priority order and capped so messages stay readable.
/// Also returns how many more ops qualified but were left out.
fn involved_ops(initial: RegValue, history: &[Op], cutoff: u64) -> (Vec<(usize, String)>, usize) {
    const LIMIT: usize = 24;
    const SOURCES_PER_READ: usize = 3;
    let mut picked: Vec<(usize, String)> = Vec::new();
    let mut seen = vec![false; history.len()];
    let mut omitted = 0;
    let mut pick = |index: usize, role: String, picked: &mut Vec<(usize, String)>| {
        if seen[index] {
            return;
        }
        seen[index] = true;
        if picked.len() < LIMIT {
            picked.push((index, role));
        } else {
            omitted += 1;
        }
    };

    let culprits: Vec<usize> = (0..history.len())
        .filter(|&i| history[i].completed == Some(cutoff))
        .collect();
    let window_start = culprits
        .iter()
        .map(|&i| history[i].invoked)
        .min()
        .unwrap_or(cutoff);

    for &i in &culprits {
        let mut role = "completes the failing prefix".to_string();
        if let OpKind::Read(seen_value) = history[i].kind {
            let written = history
                .iter()
                .any(|op| op.kind == OpKind::Write(seen_value));
            if !written && seen_value != initial {
                let _ = write!(
                    role,
                    "; no op writes {} and it is not the initial value",
                    show_value(seen_value)
                );
            }
        }
        pick(i, role, &mut picked);
    }

    // Ops in the prefix that overlap the culprits, in order of invocation. Writes completing
    // after the cutoff count as unknown writes in the prefix. Reads completing after it, or
    // never, are not part of it.
    let mut overlapping: Vec<usize> = (0..history.len())
        .filter(|&i| {
            let op = &history[i];
            match (&op.kind, op.completed) {
                (OpKind::Write(_), Some(c)) => op.invoked <= cutoff && c >= window_start,
                (OpKind::Read(_), Some(c)) => c >= window_start && c <= cutoff,
                (_, None) => false,
            }
        })
        .collect();
    overlapping.sort_by_key(|&i| (history[i].invoked, i));
    for i in overlapping {
        let role = if history[i].completed.is_some_and(|c| c > cutoff) {
            "overlaps (completes later, so its outcome is unknown in this prefix)"
        } else {
            "overlaps"
        };
        pick(i, role.to_string(), &mut picked);
    }
    // Writes with unknown outcome may take effect at any time after they were invoked, so they
    // all matter. The most recent ones come first.
    let mut unknown: Vec<usize> = (0..history.len())
        .filter(|&i| {
            let op = &history[i];
            op.completed.is_none() && op.invoked <= cutoff && matches!(op.kind, OpKind::Write(_))
        })
        .collect();
    unknown.sort_by_key(|&i| std::cmp::Reverse((history[i].invoked, i)));
    for i in unknown {
        pick(
            i,
            "outcome unknown: may take effect at any time after invocation, or never".to_string(),
            &mut picked,
        );
    }

    // The last write that completed before the culprits started. The register held its value
    // (or a later one) when they began.
    let latest_before = (0..history.len())
        .filter(|&i| {
            matches!(history[i].kind, OpKind::Write(_))
                && history[i].completed.is_some_and(|c| c < window_start)
        })
        .max_by_key(|&i| (history[i].completed, i));
    if let Some(i) = latest_before {
        pick(
            i,
            "latest write completed before the failing ops started".to_string(),
            &mut picked,
        );
    }

    // For reads, the most recent writes (by invocation) of the value they saw.
    for &culprit in &culprits {
        let OpKind::Read(value) = history[culprit].kind else {
            continue;
        };
        let mut sources: Vec<usize> = (0..history.len())
            .filter(|&i| history[i].kind == OpKind::Write(value) && history[i].invoked <= cutoff)
            .collect();
        sources.sort_by_key(|&i| std::cmp::Reverse((history[i].invoked, i)));
        for i in sources.into_iter().take(SOURCES_PER_READ) {
            pick(
                i,
                format!("writes the value read by op #{culprit}"),
                &mut picked,
            );
        }
    }
    (picked, omitted)
}

fn show_value(value: RegValue) -> String {
    match value {
        Some(v) => v.to_string(),
        None => "absent".to_string(),
    }
}

/// One-line description of an op. Tests rely on the `op #<index>:` prefix.
fn describe_op(index: usize, op: &Op) -> String {
    let what = match op.kind {
        OpKind::Write(Some(v)) => format!("write {v}"),
        OpKind::Write(None) => "delete".to_string(),
        OpKind::Read(value) => format!("read {}", show_value(value)),
    };
    let end = match op.completed {
        Some(c) => c.to_string(),
        None => "? (outcome unknown)".to_string(),
    };
    format!(
        "op #{index}: client {} {what} [{}, {end}]",
        op.client, op.invoked
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(client: usize, value: RegValue, invoked: u64, completed: u64) -> Op {
        Op {
            client,
            kind: OpKind::Write(value),
            invoked,
            completed: Some(completed),
        }
    }

    fn w_unknown(client: usize, value: RegValue, invoked: u64) -> Op {
        Op {
            client,
            kind: OpKind::Write(value),
            invoked,
            completed: None,
        }
    }

    fn r(client: usize, value: RegValue, invoked: u64, completed: u64) -> Op {
        Op {
            client,
            kind: OpKind::Read(value),
            invoked,
            completed: Some(completed),
        }
    }

    fn assert_violation(verdict: &Verdict) -> &str {
        match verdict {
            Verdict::Violation(msg) => msg,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    /// xorshift64*: deterministic and good enough to generate test histories.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            // xorshift must not start at zero, so mix the seed first.
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    struct GenConfig {
        ops: usize,
        clients: usize,
        /// Writes pick values from `1..=values`; 0 means every write gets a fresh value.
        values: u64,
        /// Percentage of writes whose client sees an error or timeout.
        unknown_write_percent: u64,
        /// Percentage of reads that fail (and must be dropped by the checker).
        failed_read_percent: u64,
    }

    /// Produces the history of a real sequential execution, so the result is linearizable by
    /// construction. Each op gets a random interval on its client's timeline and a
    /// linearization point inside that interval. Ops are executed in order of their points to
    /// find what each read saw. The output is shuffled so the checker cannot rely on input
    /// order.
    fn generate(seed: u64, cfg: &GenConfig) -> (RegValue, Vec<Op>) {
        struct Plan {
            client: usize,
            is_write: bool,
            value: RegValue,
            invoked: u64,
            point: u64,
            completed: Option<u64>,
            applied: bool,
        }
        let mut rng = Rng::new(seed);
        let initial = if rng.chance(50) { None } else { Some(0) };
        let mut free_at = vec![0u64; cfg.clients];
        let mut fresh = 1_000u64;
        let mut plans = Vec::with_capacity(cfg.ops);
        for _ in 0..cfg.ops {
            let client = rng.below(cfg.clients as u64) as usize;
            let invoked = free_at[client] + rng.below(20);
            let point = invoked + rng.below(30);
            let completed = point + rng.below(30);
            free_at[client] = completed + 1;
            let is_write = rng.chance(45);
            let mut plan = Plan {
                client,
                is_write,
                value: None,
                invoked,
                point,
                completed: Some(completed),
                applied: true,
            };
            if is_write {
                plan.value = if rng.chance(10) {
                    None
                } else if cfg.values == 0 {
                    fresh += 1;
                    Some(fresh)
                } else {
                    Some(1 + rng.below(cfg.values))
                };
                if rng.chance(cfg.unknown_write_percent) {
                    // The client timed out. The write may still land, possibly well after the
                    // client gave up, or it may never land.
                    plan.completed = None;
                    plan.applied = rng.chance(50);
                    plan.point = invoked + rng.below(200);
                }
            } else if rng.chance(cfg.failed_read_percent) {
                plan.completed = None;
            }
            plans.push(plan);
        }

        let mut order: Vec<usize> = (0..plans.len()).collect();
        order.sort_by_key(|&i| (plans[i].point, i));
        let mut state = initial;
        for i in order {
            let plan = &mut plans[i];
            if plan.is_write {
                if plan.applied {
                    state = plan.value;
                }
            } else {
                plan.value = state;
            }
        }

        let mut history: Vec<Op> = plans
            .iter()
            .map(|p| Op {
                client: p.client,
                kind: if p.is_write {
                    OpKind::Write(p.value)
                } else {
                    OpKind::Read(p.value)
                },
                invoked: p.invoked,
                completed: p.completed,
            })
            .collect();
        for i in (1..history.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            history.swap(i, j);
        }
        (initial, history)
    }

    /// Finds a completed read `r` and a value `v` that `r` cannot have seen, and returns them.
    /// `v` is impossible if every source of `v` (each write of `v`, and the initial value if
    /// it is `v`) has a write `x` such that the source completed before `x` was invoked and `x`
    /// completed before `r` was invoked. Proof: let `s` be the last source linearized before
    /// `r`. Its `x` is linearized between `s` and `r`. Any write of `v` after `x` would be a
    /// later source, so `r` cannot see `v`. Writes with unknown outcome never complete, so they
    /// never count as overwritten, and a value with such a write is never chosen.
    fn find_stale_mutation(initial: RegValue, history: &[Op]) -> Option<(usize, RegValue)> {
        let overwritten_before = |source_completed: Option<u64>, read_invoked: u64| {
            history.iter().any(|x| {
                matches!(x.kind, OpKind::Write(_))
                    && x.completed.is_some_and(|c| c < read_invoked)
                    && source_completed.is_some_and(|sc| sc < x.invoked)
            })
        };
        let mut candidates: Vec<RegValue> = history
            .iter()
            .filter_map(|op| match op.kind {
                OpKind::Write(v) => Some(v),
                OpKind::Read(_) => None,
            })
            .collect();
        candidates.push(initial);
        candidates.sort_unstable();
        candidates.dedup();
        for (ri, read) in history.iter().enumerate() {
            let OpKind::Read(actual) = read.kind else {
                continue;
            };
            if read.completed.is_none() {
                continue;
            }
            for &v in &candidates {
                if v == actual {
                    continue;
                }
                // The initial value counts as a source that completed at time 0, before
                // every op started.
                let initial_ok = v != initial || {
                    history.iter().any(|x| {
                        matches!(x.kind, OpKind::Write(_))
                            && x.completed.is_some_and(|c| c < read.invoked)
                    })
                };
                let writes_ok = history
                    .iter()
                    .filter(|op| op.kind == OpKind::Write(v))
                    .all(|s| overwritten_before(s.completed, read.invoked));
                if initial_ok && writes_ok {
                    return Some((ri, v));
                }
            }
        }
        None
    }

    /// The history as it looked at time `t`. Ops completed by `t` keep their outcome. Ops
    /// still pending lose it: writes become writes with unknown outcome and reads get dropped
    /// by the checker. Ops invoked after `t` are left out.
    fn prefix_at(history: &[Op], t: u64) -> Vec<Op> {
        history
            .iter()
            .filter(|op| op.invoked <= t)
            .map(|op| Op {
                completed: op.completed.filter(|&c| c <= t),
                ..op.clone()
            })
            .collect()
    }

    /// The end of the smallest failing prefix as found by the search frontier.
    fn frontier_of(initial: RegValue, history: &[Op]) -> Option<u64> {
        let outcome = search(initial, &prepare(history), DEFAULT_MAX_STEPS);
        assert_eq!(outcome.result, SearchResult::NotLinearizable);
        outcome.frontier
    }

    /// Checks for linearizability by brute force: it tries every order of ops that respects
    /// real time, and also tries leaving out writes with unknown outcome. Used as an
    /// independent reference on tiny histories.
    fn brute_force_linearizable(initial: RegValue, history: &[Op]) -> bool {
        fn go(state: RegValue, ops: &[Op], used: &mut [bool]) -> bool {
            if ops
                .iter()
                .zip(used.iter())
                .all(|(op, &u)| u || op.completed.is_none())
            {
                return true;
            }
            for i in 0..ops.len() {
                if used[i] {
                    continue;
                }
                // `i` can go next only if no other unused op completed strictly before `i`
                // was invoked.
                let blocked = ops.iter().enumerate().any(|(j, other)| {
                    j != i && !used[j] && other.completed.is_some_and(|c| c < ops[i].invoked)
                });
                if blocked {
                    continue;
                }
                let next_state = match ops[i].kind {
                    OpKind::Write(v) => v,
                    OpKind::Read(v) if v == state => state,
                    OpKind::Read(_) => continue,
                };
                used[i] = true;
                let ok = go(next_state, ops, used);
                used[i] = false;
                if ok {
                    return true;
                }
            }
            false
        }
        let ops: Vec<Op> = history
            .iter()
            .filter(|op| op.completed.is_some() || matches!(op.kind, OpKind::Write(_)))
            .cloned()
            .collect();
        let mut used = vec![false; ops.len()];
        go(initial, &ops, &mut used)
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(check(None, &[]), Verdict::Linearizable);
        assert_eq!(check(Some(7), &[]), Verdict::Linearizable);
    }

    #[test]
    fn sequential_writes_then_read_of_last_value() {
        let history = [
            w(0, Some(1), 0, 10),
            w(1, Some(2), 20, 30),
            w(0, Some(3), 40, 50),
            r(2, Some(3), 60, 70),
        ];
        assert_eq!(check(None, &history), Verdict::Linearizable);
        // Reading an earlier value at the end must fail.
        let mut stale = history.clone();
        stale[3] = r(2, Some(2), 60, 70);
        assert_violation(&check(None, &stale));
    }

    #[test]
    fn stale_read_after_completed_write_is_violation() {
        let history = [w(0, Some(1), 0, 10), r(1, Some(0), 20, 30)];
        let msg = assert_violation(&check(Some(0), &history)).to_string();
        assert!(
            msg.contains("op #1:"),
            "message should name the read: {msg}"
        );
        assert!(
            msg.contains("op #0:"),
            "message should name the write: {msg}"
        );
        assert!(
            msg.contains("t=30"),
            "message should name the prefix end: {msg}"
        );
    }

    #[test]
    fn concurrent_write_and_read_may_see_old_or_new() {
        for seen in [Some(0), Some(1)] {
            let history = [w(0, Some(1), 0, 100), r(1, seen, 10, 50)];
            assert_eq!(
                check(Some(0), &history),
                Verdict::Linearizable,
                "read saw {seen:?}"
            );
        }
        // Still concurrent when the write completes exactly when the read is invoked, because
        // precedence needs a strict `<`.
        let touching = [w(0, Some(1), 0, 10), r(1, Some(0), 10, 20)];
        assert_eq!(check(Some(0), &touching), Verdict::Linearizable);
    }

    #[test]
    fn new_then_old_is_violation() {
        let history = [
            w(0, Some(1), 0, 100),
            r(1, Some(1), 10, 20),
            r(2, Some(0), 30, 40),
        ];
        let msg = assert_violation(&check(Some(0), &history)).to_string();
        assert!(
            msg.contains("op #2:"),
            "the second read completes the failing prefix: {msg}"
        );
        assert!(msg.contains("t=40"), "{msg}");
        assert!(msg.contains("prefix up to t=20 is linearizable"), "{msg}");
        // Each read alone is fine, which shows the failure comes from their combination.
        assert_eq!(check(Some(0), &history[..2]), Verdict::Linearizable);
        assert_eq!(
            check(Some(0), &[history[0].clone(), history[2].clone()]),
            Verdict::Linearizable
        );
        // If the reads overlap, old-then-new and new-then-old orders are both allowed.
        let overlapping = [
            w(0, Some(1), 0, 100),
            r(1, Some(1), 10, 40),
            r(2, Some(0), 30, 50),
        ];
        assert_eq!(check(Some(0), &overlapping), Verdict::Linearizable);
    }

    #[test]
    fn unknown_write_observed_by_later_read_is_linearizable() {
        let history = [w_unknown(0, Some(5), 0), r(1, Some(5), 1_000, 1_010)];
        assert_eq!(check(None, &history), Verdict::Linearizable);
        // It may even land after a later completed write, overwriting it.
        let late = [
            w_unknown(0, Some(5), 0),
            w(1, Some(6), 10, 20),
            r(2, Some(5), 30, 40),
        ];
        assert_eq!(check(None, &late), Verdict::Linearizable);
    }

    #[test]
    fn unknown_write_never_observed_is_linearizable() {
        let history = [
            w(0, Some(1), 0, 10),
            w_unknown(1, Some(2), 20),
            r(2, Some(1), 30, 40),
            r(0, Some(1), 50, 60),
        ];
        assert_eq!(check(None, &history), Verdict::Linearizable);
    }

    #[test]
    fn unknown_write_takes_effect_at_most_once_and_not_before_invocation() {
        // After a read saw the write, a strictly later read cannot see the old value again.
        let undone = [
            w_unknown(0, Some(5), 0),
            r(1, Some(5), 50, 60),
            r(2, None, 70, 80),
        ];
        assert_violation(&check(None, &undone));
        // The write cannot be seen before it was sent.
        let early = [r(1, Some(5), 0, 10), w_unknown(0, Some(5), 20)];
        let msg = assert_violation(&check(None, &early)).to_string();
        assert!(msg.contains("op #0:"), "{msg}");
    }

    #[test]
    fn read_of_value_nobody_wrote_is_violation() {
        let history = [
            w(0, Some(1), 0, 10),
            w_unknown(1, Some(2), 5),
            r(2, Some(3), 20, 30),
        ];
        let msg = assert_violation(&check(None, &history)).to_string();
        assert!(msg.contains("op #2:"), "{msg}");
        assert!(msg.contains("no op writes 3"), "{msg}");
    }

    #[test]
    fn deletes_and_absent_reads() {
        // A read of an absent register before any write.
        assert_eq!(check(None, &[r(0, None, 0, 10)]), Verdict::Linearizable);
        // Write, delete, read absent; then write again and read.
        let history = [
            w(0, Some(4), 0, 10),
            w(1, None, 20, 30),
            r(2, None, 40, 50),
            w(0, Some(9), 60, 70),
            r(1, Some(9), 80, 90),
        ];
        assert_eq!(check(None, &history), Verdict::Linearizable);
        // Reading the deleted value after the delete completed is stale.
        let mut stale = history.clone();
        stale[2] = r(2, Some(4), 40, 50);
        assert_violation(&check(None, &stale));
        // Reading absent after a write with no delete is stale too. `None` must not be
        // confused with `Some(0)`.
        assert_violation(&check(None, &[w(0, Some(0), 0, 10), r(1, None, 20, 30)]));
        assert_violation(&check(Some(0), &[r(1, None, 0, 10)]));
        // A concurrent delete may or may not be seen.
        for seen in [None, Some(4)] {
            let concurrent = [w(0, Some(4), 0, 10), w(1, None, 20, 60), r(2, seen, 30, 40)];
            assert_eq!(check(None, &concurrent), Verdict::Linearizable);
        }
        // A delete with unknown outcome may explain an absent read.
        let unknown_delete = [
            w(0, Some(4), 0, 10),
            w_unknown(1, None, 20),
            r(2, None, 30, 40),
        ];
        assert_eq!(check(None, &unknown_delete), Verdict::Linearizable);
    }

    #[test]
    fn failed_reads_are_dropped() {
        // This read claims to have seen an impossible value, but it never completed.
        let history = [
            w(0, Some(1), 0, 10),
            Op {
                client: 1,
                kind: OpKind::Read(Some(42)),
                invoked: 20,
                completed: None,
            },
            r(2, Some(1), 30, 40),
        ];
        assert_eq!(check(None, &history), Verdict::Linearizable);
    }

    #[test]
    fn invalid_interval_is_reported_not_panicked() {
        let history = [w(0, Some(1), 50, 10), r(1, Some(1), 60, 70)];
        let msg = assert_violation(&check(None, &history)).to_string();
        assert!(msg.starts_with("invalid history"), "{msg}");
        assert!(msg.contains("op #0:"), "{msg}");
        // Extreme timestamps are fine.
        let extreme = [
            w(0, Some(1), 0, u64::MAX),
            r(1, Some(1), u64::MAX, u64::MAX),
        ];
        assert_eq!(check(None, &extreme), Verdict::Linearizable);
    }

    #[test]
    fn tiny_budget_is_inconclusive() {
        let (initial, history) = generate(
            3,
            &GenConfig {
                ops: 60,
                clients: 4,
                values: 0,
                unknown_write_percent: 0,
                failed_read_percent: 0,
            },
        );
        match check_with_budget(initial, &history, 5) {
            Verdict::Inconclusive(msg) => assert!(msg.contains("budget 5"), "{msg}"),
            other => panic!("expected inconclusive, got {other:?}"),
        }
        assert_eq!(check(initial, &history), Verdict::Linearizable);
    }

    #[test]
    fn input_order_does_not_matter() {
        let history = vec![
            w(0, Some(1), 0, 100),
            r(1, Some(1), 10, 20),
            r(2, Some(0), 30, 40),
        ];
        let mut reversed = history.clone();
        reversed.reverse();
        assert_violation(&check(Some(0), &reversed));
        let ok = vec![
            w(0, Some(1), 0, 10),
            r(1, Some(1), 20, 30),
            w(2, Some(2), 40, 50),
        ];
        let mut ok_reversed = ok.clone();
        ok_reversed.reverse();
        assert_eq!(check(None, &ok_reversed), Verdict::Linearizable);
    }

    #[test]
    fn smallest_failing_prefix_is_reported() {
        // The violation is early: the read of 0 completes at t=30. Many valid ops follow.
        let mut history = vec![w(0, Some(1), 0, 10), r(1, Some(0), 20, 30)];
        for k in 0..50u64 {
            let t = 100 + k * 20;
            history.push(w(0, Some(k + 10), t, t + 5));
            history.push(r(1, Some(k + 10), t + 10, t + 15));
        }
        let msg = assert_violation(&check(Some(0), &history)).to_string();
        assert!(msg.contains("ends at t=30"), "{msg}");
        assert!(msg.contains("first 2 of 102 completed ops"), "{msg}");
        assert!(msg.contains("op #1:"), "{msg}");
        assert!(
            !msg.contains("op #50:"),
            "later ops are not involved: {msg}"
        );
    }

    #[test]
    fn many_unknown_writes_do_not_blow_up() {
        // 120 timed-out writes of distinct values, all pending together. Reads see a few of
        // them. Trying every order of the pending writes would never finish.
        let mut history = Vec::new();
        for k in 0..120u64 {
            history.push(w_unknown((k % 8) as usize, Some(k), k));
        }
        for (i, k) in [5u64, 17, 3, 99, 42, 42, 118].into_iter().enumerate() {
            let t = 1_000 + i as u64 * 10;
            history.push(r(8, Some(k), t, t + 5));
        }
        let ops = prepare(&history);
        let outcome = search(None, &ops, DEFAULT_MAX_STEPS);
        assert_eq!(outcome.result, SearchResult::Linearizable);
        assert!(outcome.steps < 1_000, "took {} steps", outcome.steps);

        // Seeing 5 again after 17 replaced it needs a write of 5 to land twice.
        history.push(r(8, Some(5), 2_000, 2_005));
        let msg = assert_violation(&check(None, &history)).to_string();
        assert!(
            msg.contains(&format!("op #{}:", history.len() - 1)),
            "{msg}"
        );
    }

    #[test]
    fn many_identical_unknown_writes_do_not_blow_up() {
        // 30 timed-out writes of 1 and 50 of 2, then reads alternating between the two values.
        // Each read needs a write of its value to land just before it. Which of the identical
        // writes is used does not matter, and the search must not try every choice.
        let build = |reads: u64| {
            let mut history = Vec::new();
            for k in 0..80u64 {
                let value = if k % 8 < 3 { 1 } else { 2 };
                history.push(w_unknown((k % 8) as usize, Some(value), k));
            }
            for i in 0..reads {
                let t = 1_000 + i * 10;
                history.push(r(8, Some(1 + i % 2), t, t + 5));
            }
            history
        };
        // 60 alternating reads use up every write of 1 and leave 20 writes of 2 spare.
        let ok = build(60);
        let outcome = search(None, &prepare(&ok), DEFAULT_MAX_STEPS);
        assert_eq!(outcome.result, SearchResult::Linearizable);
        assert!(outcome.steps < 1_000, "took {} steps", outcome.steps);

        // The 61st read needs a 31st write of 1. Proving that no choice of writes works must
        // also be cheap.
        let too_many = build(61);
        let outcome = search(None, &prepare(&too_many), DEFAULT_MAX_STEPS);
        assert_eq!(outcome.result, SearchResult::NotLinearizable);
        assert!(outcome.steps < 10_000, "took {} steps", outcome.steps);
        let msg = assert_violation(&check(None, &too_many)).to_string();
        assert!(msg.contains("op #140:"), "{msg}");
        assert!(msg.contains("ends at t=1605"), "{msg}");
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        let mut rng = Rng::new(99);
        let (mut yes, mut no) = (0, 0);
        for round in 0..20_000 {
            let n = 1 + rng.below(8) as usize;
            // Vary how many writes time out, from none to half.
            let unknown_write_percent = [0, 20, 50][round % 3];
            let initial = if rng.chance(50) { None } else { Some(1) };
            let history: Vec<Op> = (0..n)
                .map(|i| {
                    let value = match rng.below(3) {
                        0 => None,
                        v => Some(v),
                    };
                    let invoked = rng.below(40);
                    let is_write = rng.chance(50);
                    let percent = if is_write { unknown_write_percent } else { 10 };
                    let completed = if rng.chance(percent) {
                        None
                    } else {
                        Some(invoked + rng.below(25))
                    };
                    Op {
                        client: i,
                        kind: if is_write {
                            OpKind::Write(value)
                        } else {
                            OpKind::Read(value)
                        },
                        invoked,
                        completed,
                    }
                })
                .collect();
            let expected = brute_force_linearizable(initial, &history);
            let verdict = check(initial, &history);
            match (&verdict, expected) {
                (Verdict::Linearizable, true) => yes += 1,
                (Verdict::Violation(msg), false) => {
                    no += 1;
                    // The reported prefix must be the earliest completion time at which the
                    // brute force also fails.
                    let mut times: Vec<u64> =
                        history.iter().filter_map(|op| op.completed).collect();
                    times.sort_unstable();
                    let smallest = times
                        .into_iter()
                        .find(|&t| !brute_force_linearizable(initial, &prefix_at(&history, t)));
                    assert_eq!(frontier_of(initial, &history), smallest, "{history:#?}");
                    let expected_end = format!("ends at t={}", smallest.unwrap_or_default());
                    assert!(msg.contains(&expected_end), "{msg}");
                }
                _ => panic!(
                    "mismatch: brute force says {expected}, checker says {verdict:?} for \
                     initial {initial:?} history {history:#?}"
                ),
            }
        }
        // Both outcomes must be well represented, or the comparison proves little.
        assert!(yes > 5_000 && no > 5_000, "yes={yes} no={no}");
    }

    #[test]
    fn randomized_histories_and_mutations() {
        let mut stale_mutations = 0;
        for seed in 1..=20u64 {
            let cfg = GenConfig {
                ops: 200,
                clients: 6,
                values: if seed % 2 == 0 { 0 } else { 4 },
                unknown_write_percent: 8,
                failed_read_percent: 5,
            };
            let (initial, history) = generate(seed, &cfg);
            assert_eq!(
                check(initial, &history),
                Verdict::Linearizable,
                "seed {seed}"
            );

            let mut rng = Rng::new(seed ^ 0xABCD);
            let reads: Vec<usize> = (0..history.len())
                .filter(|&i| {
                    matches!(history[i].kind, OpKind::Read(_)) && history[i].completed.is_some()
                })
                .collect();
            assert!(!reads.is_empty(), "seed {seed}");

            // A value that no op wrote.
            let target = reads[rng.below(reads.len() as u64) as usize];
            let mut mutated = history.clone();
            mutated[target].kind = OpKind::Read(Some(u64::MAX - 7));
            let msg = assert_violation(&check(initial, &mutated)).to_string();
            assert!(
                msg.contains(&format!("op #{target}:")),
                "seed {seed}: {msg}"
            );

            // A value that was written but had definitely been overwritten: a subtler stale
            // read that only the search itself can reject.
            if let Some((target, value)) = find_stale_mutation(initial, &history) {
                stale_mutations += 1;
                let mut mutated = history.clone();
                mutated[target].kind = OpKind::Read(value);
                let msg = assert_violation(&check(initial, &mutated)).to_string();
                assert!(
                    msg.contains(&format!("op #{target}:")),
                    "seed {seed}: {msg}"
                );
                // The reported prefix fails, and the one ending just before it does not.
                let Some(end) = frontier_of(initial, &mutated) else {
                    panic!("seed {seed}: no frontier");
                };
                assert_eq!(mutated[target].completed, Some(end), "seed {seed}");
                assert_violation(&check(initial, &prefix_at(&mutated, end)));
                let before = mutated
                    .iter()
                    .filter_map(|op| op.completed)
                    .filter(|&c| c < end)
                    .max();
                if let Some(before) = before {
                    assert_eq!(
                        check(initial, &prefix_at(&mutated, before)),
                        Verdict::Linearizable,
                        "seed {seed}"
                    );
                }
            }
        }
        assert!(
            stale_mutations >= 15,
            "only {stale_mutations} stale mutations found"
        );
    }

    #[test]
    fn performance_400_ops_8_clients() {
        let started = std::time::Instant::now();
        let mut violations = 0;
        for seed in 100..110u64 {
            let cfg = GenConfig {
                ops: 400,
                clients: 8,
                values: if seed % 2 == 0 { 0 } else { 3 },
                unknown_write_percent: 5,
                failed_read_percent: 3,
            };
            let (initial, history) = generate(seed, &cfg);
            let outcome = search(initial, &prepare(&history), DEFAULT_MAX_STEPS);
            assert_eq!(outcome.result, SearchResult::Linearizable, "seed {seed}");
            // Far from the default budget, with lots of headroom.
            assert!(
                outcome.steps < DEFAULT_MAX_STEPS / 100,
                "seed {seed}: {} steps",
                outcome.steps
            );
            assert_eq!(
                check(initial, &history),
                Verdict::Linearizable,
                "seed {seed}"
            );

            // Failing histories are the expensive case: everything before the violation has
            // to be ruled out. They must still be decided well within the budget.
            if let Some((target, value)) = find_stale_mutation(initial, &history) {
                violations += 1;
                let mut mutated = history.clone();
                mutated[target].kind = OpKind::Read(value);
                let outcome = search(initial, &prepare(&mutated), DEFAULT_MAX_STEPS);
                assert_eq!(outcome.result, SearchResult::NotLinearizable, "seed {seed}");
                assert!(
                    outcome.steps < DEFAULT_MAX_STEPS / 20,
                    "seed {seed}: {} steps",
                    outcome.steps
                );
            }
        }
        assert!(violations >= 5, "only {violations} failing variants");
        // Generous, to stay reliable in unoptimized builds on slow machines. A release build
        // takes a few milliseconds.
        let elapsed = started.elapsed();
        assert!(elapsed.as_secs() < 10, "took {elapsed:?}");
    }
}
