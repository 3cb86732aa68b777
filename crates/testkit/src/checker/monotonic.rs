//! Versions never go backwards on a node: a checker over observations of each node's metadata
//! version of each key, taken in time order while a workload, direct writes and sweeps race
//! (pure, no I/O). A node that lost its data legitimately goes back; runs that use this
//! checker do not wipe nodes.

use std::collections::BTreeMap;

/// What one look at one node showed for one key: its entry's version, or `None` without an
/// entry. Versions compare as strings (quorumd's sort as text in version order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub node: usize,
    pub key: String,
    pub version: Option<String>,
}

/// A version lower than one the same node showed earlier for the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backwards {
    pub node: usize,
    pub key: String,
    pub from: String,
    pub to: Option<String>,
}

impl std::fmt::Display for Backwards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key {} went backwards on node {}: {} then {}",
            self.key,
            self.node,
            self.from,
            self.to.as_deref().unwrap_or("no entry")
        )
    }
}

/// Every step back, in `observations`' order (which must be time order per node and key).
pub fn backwards(observations: &[Observation]) -> Vec<Backwards> {
    let mut highest: BTreeMap<(usize, &str), &str> = BTreeMap::new();
    let mut found = Vec::new();
    for o in observations {
        let slot = (o.node, o.key.as_str());
        match (highest.get(&slot), o.version.as_deref()) {
            (Some(&seen), now) if now.is_none_or(|v| v < seen) => found.push(Backwards {
                node: o.node,
                key: o.key.clone(),
                from: seen.to_owned(),
                to: o.version.clone(),
            }),
            (_, Some(v)) => {
                highest.insert(slot, v);
            }
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(node: usize, key: &str, v: Option<&str>) -> Observation {
        Observation {
            node,
            key: key.into(),
            version: v.map(str::to_owned),
        }
    }

    #[test]
    fn versions_that_only_grow_pass() {
        let h = [
            obs(0, "a", None),
            obs(0, "a", Some("01")),
            obs(1, "a", Some("03")),
            obs(0, "a", Some("01")),
            obs(0, "a", Some("02")),
            obs(1, "b", Some("01")),
        ];
        assert!(backwards(&h).is_empty());
    }

    /// Negative control: a step back, and an entry that disappears, are both caught, per node.
    #[test]
    fn a_step_back_or_a_lost_entry_is_caught() {
        let h = [
            obs(0, "a", Some("02")),
            obs(1, "a", Some("01")),
            obs(0, "a", Some("01")),
            obs(1, "a", None),
        ];
        let found = backwards(&h);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].node, 0);
        assert_eq!(found[1].to, None);
    }
}
