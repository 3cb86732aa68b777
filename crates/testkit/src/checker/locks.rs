//! Mutual-exclusion checker for lock and lease histories. Pure: no I/O.
//!
//! Each grant is the interval during which a client believed it held a resource (a lock name
//! or a queue item), measured on one monotonic clock: from before it sent the request to that
//! plus the validity it was given (or to when it released, if earlier). Exclusion holds when no
//! two intervals on the same resource overlap. For locks, the fences must also strictly
//! increase in the order the intervals start.

use std::collections::BTreeMap;
use std::fmt;

/// One holder's claim on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub resource: String,
    pub holder: String,
    /// Fencing token, if the primitive issues one.
    pub fence: Option<u64>,
    /// Monotonic start (any unit, e.g. µs since the test began).
    pub start: u64,
    /// Monotonic end, exclusive; `end <= start` means an empty interval.
    pub end: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Two holders at once.
    Overlap { first: Held, second: Held },
    /// A later grant with a fence not above an earlier one's.
    FenceNotIncreasing { earlier: Held, later: Held },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Overlap { first, second } => write!(
                f,
                "{:?}: {} held [{}, {}) and {} held [{}, {}) at the same time",
                first.resource,
                first.holder,
                first.start,
                first.end,
                second.holder,
                second.start,
                second.end
            ),
            Violation::FenceNotIncreasing { earlier, later } => write!(
                f,
                "{:?}: {} got fence {:?} at {} after {} got fence {:?} at {}",
                earlier.resource,
                later.holder,
                later.fence,
                later.start,
                earlier.holder,
                earlier.fence,
                earlier.start
            ),
        }
    }
}

/// Checks a history; returns every violation found (empty = exclusive, fences increasing).
pub fn check(history: &[Held]) -> Vec<Violation> {
    let mut by_resource: BTreeMap<&str, Vec<&Held>> = BTreeMap::new();
    for h in history.iter().filter(|h| h.end > h.start) {
        by_resource.entry(&h.resource).or_default().push(h);
    }
    let mut violations = Vec::new();
    for (_, mut grants) in by_resource {
        grants.sort_by_key(|h| (h.start, h.end));
        // The grant that reaches furthest so far: any later start before its end overlaps it.
        let mut furthest: Option<&Held> = None;
        for (i, h) in grants.iter().enumerate() {
            if let Some(prev) = furthest.filter(|p| h.start < p.end) {
                violations.push(Violation::Overlap {
                    first: prev.clone(),
                    second: (*h).clone(),
                });
            }
            if furthest.is_none_or(|p| h.end > p.end) {
                furthest = Some(h);
            }
            if i > 0 {
                let earlier = grants[i - 1];
                if let (Some(a), Some(b)) = (earlier.fence, h.fence)
                    && b <= a
                {
                    violations.push(Violation::FenceNotIncreasing {
                        earlier: earlier.clone(),
                        later: (*h).clone(),
                    });
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(resource: &str, holder: &str, fence: u64, start: u64, end: u64) -> Held {
        Held {
            resource: resource.into(),
            holder: holder.into(),
            fence: Some(fence),
            start,
            end,
        }
    }

    #[test]
    fn back_to_back_grants_with_growing_fences_pass() {
        let h = vec![
            held("a", "c1", 1, 0, 10),
            held("a", "c2", 2, 10, 20),
            held("b", "c1", 1, 5, 15),
            held("a", "c3", 5, 25, 30),
        ];
        assert!(check(&h).is_empty());
    }

    #[test]
    fn crafted_overlap_is_flagged() {
        let h = vec![held("a", "c1", 1, 0, 10), held("a", "c2", 2, 9, 20)];
        let v = check(&h);
        assert_eq!(v.len(), 1);
        assert!(
            matches!(&v[0], Violation::Overlap { first, second } if first.holder == "c1" && second.holder == "c2")
        );
        assert!(v[0].to_string().contains("same time"));
    }

    #[test]
    fn overlap_with_a_long_earlier_grant_is_flagged() {
        // c2 fits after c1's start but inside c0's long interval.
        let h = vec![
            held("a", "c0", 1, 0, 100),
            held("a", "c1", 2, 100, 110),
            held("a", "c2", 3, 50, 60),
        ];
        let v = check(&h);
        assert!(v.iter().any(
            |x| matches!(x, Violation::Overlap { first, second } if first.holder == "c0" && second.holder == "c2")
        ));
    }

    #[test]
    fn fence_going_down_or_repeating_is_flagged() {
        let h = vec![held("a", "c1", 7, 0, 10), held("a", "c2", 7, 10, 20)];
        assert!(matches!(
            check(&h).as_slice(),
            [Violation::FenceNotIncreasing { .. }]
        ));
        let h = vec![held("a", "c1", 7, 0, 10), held("a", "c2", 3, 11, 20)];
        assert_eq!(check(&h).len(), 1);
    }

    #[test]
    fn empty_intervals_and_other_resources_are_ignored() {
        let h = vec![
            held("a", "c1", 1, 0, 10),
            held("a", "late", 0, 5, 5),
            held("b", "c2", 1, 0, 10),
        ];
        assert!(check(&h).is_empty());
        let no_fence = Held {
            fence: None,
            ..held("q", "c1", 0, 0, 10)
        };
        let no_fence2 = Held {
            fence: None,
            ..held("q", "c2", 0, 10, 12)
        };
        assert!(check(&[no_fence, no_fence2]).is_empty());
    }
}
