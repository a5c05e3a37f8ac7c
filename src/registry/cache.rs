//! The lookup cache: bounded, coalescing (a lookup in progress is shared), digests kept for
//! good, tags and failures for a while.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::{BoxFuture, FutureExt as _, Shared};
use tokio::time::Instant;

use super::{FAILURE_TTL, TAG_TTL};
use crate::mutate::{ImageCommand, Platform};

pub(super) type Lookup = Result<ImageCommand, String>;

/// A finished lookup and when it finished.
#[derive(Clone)]
pub(super) struct Done {
    pub(super) outcome: Lookup,
    pub(super) at: Instant,
}

/// One reference as one credential sees it on one platform.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub(super) reference: String,
    pub(super) platform: Platform,
    pub(super) credentials: Option<[u8; 32]>,
}

pub(super) struct Slot {
    pub(super) lookup: Shared<BoxFuture<'static, Done>>,
    pub(super) used: Instant,
    pub(super) by_digest: bool,
}

/// Answers by reference: digests for good, tags for [`TAG_TTL`], failures for
/// [`FAILURE_TTL`]. A lookup in progress is shared by everyone asking meanwhile.
pub(super) struct Cache {
    pub(super) slots: Mutex<HashMap<Key, Slot>>,
    pub(super) capacity: usize,
}

impl Cache {
    pub(super) fn fresh(slot: &Slot, now: Instant) -> bool {
        let Some(done) = slot.lookup.peek() else {
            return true; // in progress
        };
        let ttl = match &done.outcome {
            Ok(_) if slot.by_digest => return true,
            Ok(_) => TAG_TTL,
            Err(_) => FAILURE_TTL,
        };
        now.duration_since(done.at) < ttl
    }

    /// The lookup for `key`: cached, in progress, or started now with `start` on its own task.
    pub(super) fn get(
        &self,
        key: Key,
        by_digest: bool,
        start: impl FnOnce() -> BoxFuture<'static, Lookup>,
    ) -> Shared<BoxFuture<'static, Done>> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(&key).filter(|s| Self::fresh(s, now)) {
            slot.used = now;
            return slot.lookup.clone();
        }
        if slots.len() >= self.capacity && !slots.contains_key(&key) {
            slots.retain(|_, s| Self::fresh(s, now));
            if slots.len() >= self.capacity {
                let oldest = slots
                    .iter()
                    .min_by_key(|(_, s)| s.used)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    slots.remove(&oldest);
                }
            }
        }
        let lookup = start();
        let task = tokio::spawn(async move {
            let outcome = lookup.await;
            Done {
                outcome,
                at: Instant::now(),
            }
        });
        let lookup = async move {
            match task.await {
                Ok(done) => done,
                Err(e) => Done {
                    outcome: Err(format!("the lookup failed: {e}")),
                    at: Instant::now(),
                },
            }
        }
        .boxed()
        .shared();
        slots.insert(
            key,
            Slot {
                lookup: lookup.clone(),
                used: now,
                by_digest,
            },
        );
        lookup
    }

    pub(super) fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
