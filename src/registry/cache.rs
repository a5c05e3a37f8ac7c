//! The lookup cache: bounded, coalescing (a lookup in progress is shared), digests kept for
//! good, tags and failures for a while.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::{BoxFuture, FutureExt as _, Shared};
use tokio::time::Instant;

use super::error::LookupError;
use super::{FAILURE_TTL, TAG_TTL};
use crate::mutate::{ImageConfig, Platform};

pub(super) type Lookup = Result<ImageConfig, LookupError>;

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
    /// When `start` refuses (no lookup slot free), nothing is cached or evicted.
    pub(super) fn get(
        &self,
        key: Key,
        by_digest: bool,
        start: impl FnOnce() -> Result<BoxFuture<'static, Lookup>, LookupError>,
    ) -> Result<Shared<BoxFuture<'static, Done>>, LookupError> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(&key).filter(|s| Self::fresh(s, now)) {
            slot.used = now;
            return Ok(slot.lookup.clone());
        }
        let lookup = start()?;
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
                    outcome: Err(LookupError::Task(e.to_string())),
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
        Ok(lookup)
    }

    pub(super) fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn key(reference: &str) -> Key {
        Key {
            reference: reference.into(),
            platform: Platform::default(),
            credentials: None,
        }
    }

    fn answer(outcome: Lookup) -> Result<BoxFuture<'static, Lookup>, LookupError> {
        Ok(async move { outcome }.boxed())
    }

    #[tokio::test(start_paused = true)]
    async fn cache_coalesces_and_expires() {
        let cache = Cache {
            slots: Mutex::new(HashMap::new()),
            capacity: 2,
        };
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let slow = |calls: Arc<std::sync::atomic::AtomicUsize>| {
            move || {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok(ImageConfig::default())
                }
                .boxed())
            }
        };
        let a = cache.get(key("a:1"), false, slow(calls.clone())).unwrap();
        let b = cache.get(key("a:1"), false, slow(calls.clone())).unwrap();
        let (a, b) = tokio::join!(a, b);
        assert!(a.outcome.is_ok() && b.outcome.is_ok());
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "coalesced"
        );

        cache
            .get(key("a:1"), false, slow(calls.clone()))
            .unwrap()
            .await;
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "cached");
        tokio::time::advance(TAG_TTL).await;
        cache
            .get(key("a:1"), false, slow(calls.clone()))
            .unwrap()
            .await;
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "a tag expires"
        );

        cache
            .get(key("d@x"), true, slow(calls.clone()))
            .unwrap()
            .await;
        tokio::time::advance(TAG_TTL * 10).await;
        cache
            .get(key("d@x"), true, slow(calls.clone()))
            .unwrap()
            .await;
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "a digest does not"
        );

        let failed = cache
            .get(key("f:1"), false, || {
                answer(Err(LookupError::SecretsTimeout))
            })
            .unwrap()
            .await;
        assert_eq!(failed.outcome, Err(LookupError::SecretsTimeout));
        assert_eq!(cache.len(), 2, "bounded: the least recently used went");
        tokio::time::advance(FAILURE_TTL).await;
        let again = cache
            .get(key("f:1"), false, || answer(Ok(ImageConfig::default())))
            .unwrap()
            .await;
        assert!(again.outcome.is_ok(), "a failure is retried after its TTL");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_start_caches_and_evicts_nothing() {
        let cache = Cache {
            slots: Mutex::new(HashMap::new()),
            capacity: 1,
        };
        cache
            .get(key("a:1"), false, || answer(Ok(ImageConfig::default())))
            .unwrap()
            .await;
        let refused = cache.get(key("b:1"), false, || Err(LookupError::Busy(1)));
        assert_eq!(refused.err(), Some(LookupError::Busy(1)));
        let kept = cache
            .get(key("a:1"), false, || Err(LookupError::Busy(1)))
            .expect("a:1 is still cached");
        assert!(kept.await.outcome.is_ok());
        assert_eq!(cache.len(), 1);
    }
}
