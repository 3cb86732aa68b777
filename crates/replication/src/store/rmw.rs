//! Read-modify-write on one key (APPEND, GETDEL, EXPIRE, PERSIST, SET ... GET/KEEPTTL) and
//! writes with an absolute expiry.
//!
//! A read-modify-write reads the key at the request's level, lets the caller decide the new
//! state from what it saw, and writes that state under the ballot its read promised
//! (`ballot.rs`). When another writer got in between, the write is refused on the nodes and
//! the whole step is retried with a fresh read, so concurrent APPENDs never lose or repeat
//! each other's bytes, through one quorumd process or several. TTL changes are ordinary
//! versioned writes of the same value with a new absolute expiry, so the sweep replicates
//! them like any other write.
//!
//! Within this process, writes made here of the same key also take turns (a striped lock):
//! they never refuse each other, and the ballots only settle races with other processes.

use super::{Found, Precondition, StoreError, TypedChange, TypedFound, TypedValue, VersionedStore};
use quorumd_core::meta::EntryKind;
use quorumd_core::quorum::Consistency;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// Stripes of the per-key lock; two keys sharing one only wait for each other.
pub(super) const STRIPES: u64 = 1024;

static KEY_LOCKS: LazyLock<Vec<Mutex<()>>> =
    LazyLock::new(|| (0..STRIPES).map(|_| Mutex::new(())).collect());

/// The stripe of `key`'s turn.
pub(super) fn stripe_of(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key) % STRIPES
}

/// Serialises this process's read-modify-writes and `put_at` writes of one key. `None` when
/// the watched transaction running in this task already holds the key's turn (its commands
/// would otherwise wait for themselves).
pub(super) async fn lock_key(key: &[u8]) -> Option<MutexGuard<'static, ()>> {
    let stripe = stripe_of(key);
    if super::watch::holds_stripe(stripe) {
        return None;
    }
    Some(KEY_LOCKS[stripe as usize].lock().await)
}

/// Takes the turns of several keys at once (RENAME, COPY): their stripes in increasing order,
/// each once, so two such writers never wait for each other in a cycle.
pub(super) async fn lock_keys(keys: &[&[u8]]) -> Vec<MutexGuard<'static, ()>> {
    lock_stripes(keys.iter().map(|k| stripe_of(k)).collect()).await
}

/// Takes these stripes in increasing order, each once, leaving out those the running watched
/// transaction holds.
pub(super) async fn lock_stripes(mut stripes: Vec<u64>) -> Vec<MutexGuard<'static, ()>> {
    stripes.sort_unstable();
    stripes.dedup();
    stripes.retain(|s| !super::watch::holds_stripe(*s));
    let mut guards = Vec::with_capacity(stripes.len());
    for s in stripes {
        guards.push(KEY_LOCKS[s as usize].lock().await);
    }
    guards
}

/// Most attempts of a read-modify-write that keeps losing to concurrent writers.
pub(super) const MAX_ATTEMPTS: u32 = 32;

/// What a read-modify-write does with the key, decided from the value it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Leave the key as it is.
    Keep,
    /// Store this value with this absolute expiry (ms since the epoch; `None` = no TTL).
    Put {
        value: Vec<u8>,
        expires_at_ms: Option<u64>,
    },
    /// Delete the key.
    Delete,
}

impl From<Change> for TypedChange {
    fn from(change: Change) -> TypedChange {
        match change {
            Change::Keep => TypedChange::Keep,
            Change::Put {
                value,
                expires_at_ms,
            } => TypedChange::PutString {
                value,
                expires_at_ms,
            },
            Change::Delete => TypedChange::Delete,
        }
    }
}

/// Waits a little before retrying a compare-and-set that lost to another instance's write;
/// jittered, so two writers racing on one key do not collide forever.
pub(super) async fn back_off(attempt: u32) {
    let pause = rand::random_range(0..=attempt.min(8)) as u64;
    tokio::time::sleep(Duration::from_millis(pause)).await;
}

impl VersionedStore {
    /// Writes `value` with an absolute expiry (`SET ... PXAT`). An expiry in the past stores
    /// a value that is already gone, as Redis does. Takes its turn with this process's
    /// read-modify-writes of the key, so neither can make the other's refused write win.
    #[tracing::instrument(level = "debug", name = "store.put_at", skip_all, fields(level = %level, bytes = value.len()))]
    pub async fn put_at(
        &self,
        key: &[u8],
        value: &[u8],
        expires_at_ms: Option<u64>,
        level: Consistency,
        precondition: Precondition,
    ) -> Result<super::WriteReceipt, StoreError> {
        let loc = std::sync::Arc::new(self.locate(key)?);
        let _turn = lock_key(key).await;
        self.within_deadline(
            "write",
            self.write_inner(
                loc,
                EntryKind::Value,
                value,
                expires_at_ms,
                level,
                precondition,
            ),
        )
        .await
    }

    /// Reads `key`, asks `decide` what to do given the live value (if any), and writes that
    /// under a ballot (`ballot.rs`), retrying from the read when a concurrent write wins.
    /// Returns what `decide` returned for the state that was finally written. A key of another
    /// type than string is `WrongType`.
    #[tracing::instrument(level = "debug", name = "store.read_modify_write", skip_all, fields(level = %level))]
    pub async fn read_modify_write<R>(
        &self,
        key: &[u8],
        level: Consistency,
        mut decide: impl FnMut(Option<&Found>) -> (Change, R),
    ) -> Result<R, StoreError> {
        let loc = std::sync::Arc::new(self.locate(key)?);
        self.within_deadline("read-modify-write", async {
            let _turn = lock_key(key).await;
            self.rmw_typed_in_turn(&loc, level, |found| {
                let found = match found {
                    None => None,
                    Some(TypedFound {
                        value: TypedValue::String(value),
                        version,
                        expires_at_ms,
                    }) => Some(Found {
                        value: value.clone(),
                        version: *version,
                        expires_at_ms: *expires_at_ms,
                    }),
                    Some(_) => return (TypedChange::Keep, Err(StoreError::WrongType)),
                };
                let (change, result) = decide(found.as_ref());
                (change.into(), Ok(result))
            })
            .await?
            .0
        })
        .await
    }

    /// Deletes `key` if it exists; whether it did. The existence check reads only metadata,
    /// so a versioned key of any type (e.g. a hash the sweep adopted) is deleted too. A value
    /// without metadata (written straight to a node) goes through `read_modify_write`.
    #[tracing::instrument(level = "debug", name = "store.delete_existing", skip_all, fields(level = %level))]
    pub async fn delete_existing(
        &self,
        key: &[u8],
        level: Consistency,
    ) -> Result<bool, StoreError> {
        let loc = std::sync::Arc::new(self.locate(key)?);
        let tombstone = self.within_deadline("delete", async {
            let _turn = lock_key(key).await;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let written = self
                    .write_inner(
                        loc.clone(),
                        EntryKind::Tombstone,
                        &[],
                        None,
                        level,
                        Precondition::IfExists,
                    )
                    .await;
                match written {
                    Ok(_) => return Ok(true),
                    Err(StoreError::PreconditionFailed { current: None }) => return Ok(false),
                    Err(StoreError::PreconditionFailed { .. }) if attempt < MAX_ATTEMPTS => {
                        back_off(attempt).await
                    }
                    Err(e) => return Err(e),
                }
            }
        });
        if tombstone.await? {
            return Ok(true);
        }
        self.read_modify_write(key, level, |found| match found {
            Some(_) => (Change::Delete, true),
            None => (Change::Keep, false),
        })
        .await
    }
}
