//! The HyperLogLog commands: PFADD, PFCOUNT, PFMERGE and PFDEBUG, with redis-server 7.0's
//! replies, errors and stored bytes (`hll.rs` holds the encoding). A HyperLogLog is a string:
//! the reads go through the store's string read, every write through the string
//! read-modify-write (a quorum read, then a versioned compare-and-set) that APPEND and SETBIT
//! use, keeping the key's time to live. PFCOUNT of one key writes too when the cached
//! cardinality is stale, as Redis does; PFSELFTEST is refused.

use super::hll::{self, Invalid};
use super::key_spec as spec;
use super::{Access, Flag, Spec, data, eq, store_error};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::crdt::CrdtKind;
use quorumd_core::quorum::Consistency;
use quorumd_replication::store::{Change, Found, StoreError, VersionedStore};

const WRITE: &[Flag] = &[Flag::Write, Flag::DenyOom];

pub static SPECS: &[Spec] = &[
    spec(
        "pfadd",
        -2,
        &[Flag::Write, Flag::DenyOom, Flag::Fast],
        1,
        1,
        |a| data(HllCmd::Add(a[1].clone(), a[2..].to_vec())),
    ),
    // Redis flags PFCOUNT read-only although it may store the cardinality it computed: the
    // cache changes no element, so a read-only token may run it.
    spec("pfcount", -2, &[Flag::ReadOnly], -1, 1, |a| {
        data(HllCmd::Count(a[1..].to_vec()))
    }),
    spec("pfmerge", -2, WRITE, -1, 1, |a| {
        data(HllCmd::Merge(a[1].clone(), a[1..].to_vec()))
    }),
    Spec::keyed("pfdebug", 3, WRITE, (2, 2, 1), |a| {
        data(HllCmd::Debug(a[1].clone(), a[2].clone()))
    }),
    Spec::keyless("pfselftest", 1, &[], |_| {
        Err(Frame::error(
            "ERR quorumd does not serve PFSELFTEST (a test of redis-server's own code)",
        ))
    }),
];

pub enum HllCmd {
    /// The key and the elements.
    Add(Bytes, Vec<Bytes>),
    /// The keys: one counts (and caches), several count their union.
    Count(Vec<Bytes>),
    /// The destination, then every source, the destination first (as Redis reads them).
    Merge(Bytes, Vec<Bytes>),
    /// The subcommand and the key.
    Debug(Bytes, Bytes),
}

/// Redis's replies for a value that is not a usable HyperLogLog.
fn invalid(e: Invalid) -> Frame {
    match e {
        Invalid::NotHll => Frame::error("WRONGTYPE Key is not a valid HyperLogLog string value."),
        Invalid::Corrupt => Frame::error("INVALIDOBJ Corrupted HLL object detected"),
    }
}

/// A store failure: a counter key (INCR's) is a string to Redis, but an integer one, which
/// no HyperLogLog is.
fn failed(e: StoreError) -> Frame {
    match e {
        StoreError::KindConflict {
            holds: CrdtKind::Counter,
        } => invalid(Invalid::NotHll),
        e => store_error(e),
    }
}

/// A read source: absent, or a checked HyperLogLog value.
type Source = Result<Option<Vec<u8>>, Frame>;

fn checked(found: Option<&Found>) -> Source {
    match found {
        None => Ok(None),
        Some(f) => hll::check(&f.value)
            .map(|()| Some(f.value.clone()))
            .map_err(invalid),
    }
}

/// Every source's registers' maximum, in argument order (the first bad one answers), and
/// whether any was dense.
fn union(sources: &[Source]) -> Result<(Vec<u8>, bool), Frame> {
    let mut max = vec![0u8; hll::REGISTERS];
    let mut dense = false;
    for s in sources {
        match s {
            Ok(None) => {}
            Ok(Some(v)) => {
                dense |= !hll::is_sparse(v);
                hll::merge_into(&mut max, v).map_err(invalid)?;
            }
            Err(refusal) => return Err(refusal.clone()),
        }
    }
    Ok((max, dense))
}

impl HllCmd {
    pub fn access(&self) -> Access<'_> {
        match self {
            HllCmd::Add(k, _) | HllCmd::Debug(_, k) => Access {
                reads: vec![],
                writes: vec![k],
            },
            // PFCOUNT of one key may store its cardinality.
            HllCmd::Count(keys) if keys.len() == 1 => Access {
                reads: vec![],
                writes: keys.iter().map(|k| &k[..]).collect(),
            },
            HllCmd::Count(keys) => Access {
                reads: keys.iter().map(|k| &k[..]).collect(),
                writes: vec![],
            },
            HllCmd::Merge(dst, sources) => Access {
                reads: sources.iter().map(|k| &k[..]).collect(),
                writes: vec![dst],
            },
        }
    }

    pub async fn apply(self, store: &VersionedStore, level: Consistency) -> Frame {
        let read = |key: Bytes| async move {
            match store.get(&key, level).await {
                Ok(found) => checked(found.as_ref()),
                Err(e) => Err(failed(e)),
            }
        };
        match self {
            HllCmd::Add(key, elements) => store
                .read_modify_write(&key, level, |found| {
                    let (mut value, mut updated) = match checked(found) {
                        Ok(Some(v)) => (v, false),
                        // A new key counts as a change even without elements.
                        Ok(None) => (hll::empty(), true),
                        Err(refusal) => return (Change::Keep, refusal),
                    };
                    let mut reply = None;
                    for e in &elements {
                        match hll::add(&mut value, e) {
                            Ok(changed) => updated |= changed,
                            Err(e) => {
                                reply = Some(invalid(e));
                                break;
                            }
                        }
                    }
                    let reply = reply.unwrap_or(Frame::Integer(i64::from(updated)));
                    // Redis edits the value in place, so elements added before a corrupt
                    // part stay, with the cache as it was; a success makes it stale.
                    if updated && matches!(reply, Frame::Integer(_)) {
                        hll::invalidate_cache(&mut value);
                    }
                    if found.is_some_and(|f| f.value == value) {
                        return (Change::Keep, reply);
                    }
                    let expires_at_ms = found.and_then(|f| f.expires_at_ms);
                    let put = Change::Put {
                        value,
                        expires_at_ms,
                    };
                    (put, reply)
                })
                .await
                .unwrap_or_else(failed),
            HllCmd::Count(keys) if keys.len() == 1 => store
                .read_modify_write(&keys[0], level, |found| {
                    let value = match checked(found) {
                        Ok(Some(v)) => v,
                        Ok(None) => return (Change::Keep, Frame::Integer(0)),
                        Err(refusal) => return (Change::Keep, refusal),
                    };
                    if let Some(n) = hll::cached_count(&value) {
                        return (Change::Keep, Frame::Integer(n as i64));
                    }
                    match hll::count_and_cache(&value) {
                        Ok((n, value)) => {
                            let expires_at_ms = found.and_then(|f| f.expires_at_ms);
                            let put = Change::Put {
                                value,
                                expires_at_ms,
                            };
                            (put, Frame::Integer(n as i64))
                        }
                        Err(e) => (Change::Keep, invalid(e)),
                    }
                })
                .await
                .unwrap_or_else(failed),
            HllCmd::Count(keys) => {
                let sources = futures::future::join_all(keys.into_iter().map(read)).await;
                match union(&sources) {
                    Ok((max, _)) => Frame::Integer(hll::count_registers(&max) as i64),
                    Err(refusal) => refusal,
                }
            }
            HllCmd::Merge(dst, keys) => {
                // The other sources are read first; the destination, a source too, inside
                // the read-modify-write, so that its own registers are not lost.
                let others = keys.iter().filter(|k| **k != dst).cloned().map(read);
                let mut others = futures::future::join_all(others).await.into_iter();
                let others: Vec<Option<Source>> = keys
                    .iter()
                    .map(|k| if *k == dst { None } else { others.next() })
                    .collect();
                store
                    .read_modify_write(&dst, level, |found| {
                        let own = checked(found);
                        let sources: Vec<Source> = others
                            .iter()
                            .map(|s| s.clone().unwrap_or_else(|| own.clone()))
                            .collect();
                        let (max, dense) = match union(&sources) {
                            Ok(u) => u,
                            Err(refusal) => return (Change::Keep, refusal),
                        };
                        let dest = match own {
                            Ok(Some(v)) => v,
                            _ => hll::empty(),
                        };
                        match hll::merged(dest, &max, dense) {
                            Ok(value) => {
                                let expires_at_ms = found.and_then(|f| f.expires_at_ms);
                                let put = Change::Put {
                                    value,
                                    expires_at_ms,
                                };
                                (put, Frame::ok())
                            }
                            Err(e) => (Change::Keep, invalid(e)),
                        }
                    })
                    .await
                    .unwrap_or_else(failed)
            }
            HllCmd::Debug(sub, key) => store
                .read_modify_write(&key, level, |found| {
                    let value = match checked(found) {
                        Ok(Some(v)) => v,
                        Ok(None) => {
                            let e = Frame::error("ERR The specified key does not exist");
                            return (Change::Keep, e);
                        }
                        Err(refusal) => return (Change::Keep, refusal),
                    };
                    let expires_at_ms = found.and_then(|f| f.expires_at_ms);
                    let sparse = hll::is_sparse(&value);
                    // GETREG and TODENSE turn a sparse value dense, and store it so.
                    let densified = |reply: fn(&[u8]) -> Frame| match hll::to_dense(&value) {
                        Ok(dense) if sparse => {
                            let r = reply(&dense);
                            let put = Change::Put {
                                value: dense,
                                expires_at_ms,
                            };
                            (put, r)
                        }
                        Ok(dense) => (Change::Keep, reply(&dense)),
                        Err(e) => (Change::Keep, invalid(e)),
                    };
                    if eq(&sub, "getreg") {
                        densified(|d| {
                            let regs = hll::dense_registers(d);
                            Frame::Array(
                                regs.into_iter().map(|r| Frame::Integer(r.into())).collect(),
                            )
                        })
                    } else if eq(&sub, "decode") {
                        let reply = if sparse {
                            Frame::bulk(hll::decode(&value))
                        } else {
                            Frame::error("ERR HLL encoding is not sparse")
                        };
                        (Change::Keep, reply)
                    } else if eq(&sub, "encoding") {
                        let name = if sparse { "sparse" } else { "dense" };
                        (Change::Keep, Frame::Simple(name.into()))
                    } else if eq(&sub, "todense") {
                        if sparse {
                            densified(|_| Frame::Integer(1))
                        } else {
                            (Change::Keep, Frame::Integer(0))
                        }
                    } else {
                        let e = format!(
                            "ERR Unknown PFDEBUG subcommand '{}'",
                            String::from_utf8_lossy(&sub)
                        );
                        (Change::Keep, Frame::error(e))
                    }
                })
                .await
                .unwrap_or_else(failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bad_source_answers() {
        let good = Ok(Some(hll::empty()));
        let not = invalid(Invalid::NotHll);
        assert!(!union(&[good.clone(), Ok(None)]).unwrap().1);
        assert_eq!(union(&[good, Err(not.clone())]).unwrap_err(), not);
        let mut short = hll::empty();
        short.truncate(17);
        assert_eq!(
            union(&[Ok(Some(short))]).unwrap_err(),
            Frame::error("INVALIDOBJ Corrupted HLL object detected")
        );
    }
}
