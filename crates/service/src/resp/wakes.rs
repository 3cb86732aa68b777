//! "Key written" announcements for the blocking pops (`command/blocking.rs`): a waiting
//! connection registers the keys it waits on, and a list or sorted-set write through this
//! instance wakes the longest-waiting connection of each key it wrote at once.
//!
//! Only the oldest waiter of a key is woken, so waiters of one key in one instance are served
//! in arrival order, as Redis serves them; it passes the turn on when it ends (popped, timed
//! out or dropped), so a push of several items reaches the next waiters too. A wake is only a
//! hint to try the pop again: the pop itself is the store's read-modify-write, which decides.
//! Writes through another instance or straight on the nodes are never announced here: the
//! waiters' bounded back-off covers them.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

type Queues = HashMap<Bytes, VecDeque<Arc<Waiter>>>;

/// The waiters of every key, oldest first.
#[derive(Default)]
pub struct Wakes {
    /// Registered waiters: writes skip the lock when there are none.
    waiting: AtomicUsize,
    queues: Mutex<Queues>,
}

#[derive(Default)]
struct Waiter {
    notify: Notify,
    /// Woken and not yet tried again: the turn to pass on if it ends now.
    picked: AtomicBool,
}

/// One connection's wait on its keys, until dropped.
pub struct Registration<'a> {
    wakes: &'a Wakes,
    keys: Vec<Bytes>,
    me: Arc<Waiter>,
}

impl Wakes {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        // A panic elsewhere cannot leave the queues half-changed: every change is one call.
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the back of each key's queue.
    pub fn register(&self, keys: &[Bytes]) -> Registration<'_> {
        let me = Arc::new(Waiter::default());
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        {
            let mut queues = self.lock();
            for k in &keys {
                queues.entry(k.clone()).or_default().push_back(me.clone());
            }
        }
        // SeqCst with `announce`'s load: a write that finds no waiter finished before this
        // registration, so the waiter's next try, made after it, sees that write.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Registration {
            wakes: self,
            keys,
            me,
        }
    }

    /// `keys` were written: wakes the oldest waiter of each.
    pub fn announce<K: AsRef<[u8]>>(&self, keys: &[K]) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let queues = self.lock();
        for k in keys {
            if let Some(first) = queues.get(k.as_ref()).and_then(|q| q.front()) {
                first.picked.store(true, Ordering::SeqCst);
                first.notify.notify_one();
            }
        }
    }

    /// Waiters registered now, over all keys (for tests and INFO-like checks).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

impl Registration<'_> {
    /// Returns once a write of one of the keys was announced (at once if one was announced
    /// since the last call).
    pub async fn woken(&self) {
        self.me.notify.notified().await;
        self.me.picked.store(false, Ordering::SeqCst);
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        {
            let mut queues = self.wakes.lock();
            for k in &self.keys {
                if let Some(q) = queues.get_mut(k) {
                    q.retain(|w| !Arc::ptr_eq(w, &self.me));
                    if q.is_empty() {
                        queues.remove(k);
                    }
                }
            }
        }
        self.wakes.waiting.fetch_sub(1, Ordering::SeqCst);
        // Woken but gone before trying: the next waiter takes the turn.
        if self.me.picked.load(Ordering::SeqCst) {
            self.wakes.announce(&self.keys);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn is_woken(r: &Registration<'_>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), r.woken())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_oldest_waiter_is_woken_and_passes_the_turn_on() {
        let wakes = Wakes::default();
        let k = [Bytes::from("k")];
        let first = wakes.register(&k);
        let second = wakes.register(&k);
        wakes.announce(&k);
        assert!(!is_woken(&second).await, "only the oldest is woken");
        assert!(is_woken(&first).await);
        // Woken again without trying, then gone: the turn goes to the next.
        wakes.announce(&k);
        drop(first);
        assert!(is_woken(&second).await);
        drop(second);
        assert_eq!(wakes.waiting(), 0);
        assert!(wakes.lock().is_empty(), "no queue is left behind");
    }

    #[tokio::test]
    async fn other_keys_wake_nobody() {
        let wakes = Wakes::default();
        let r = wakes.register(&[Bytes::from("a")]);
        wakes.announce(&[b"b"]);
        assert!(!is_woken(&r).await);
    }
}
