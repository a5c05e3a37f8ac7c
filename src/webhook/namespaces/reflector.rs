//! The in-cluster namespace source: a kube-rs reflector of the opted-in Namespaces, read by
//! every admission without I/O. Ready once the first full list has arrived.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};

use super::{config, is_opted_in, NamespaceLookup};
use crate::config::{Defaults, NamespaceConfig, INJECT_LABEL};

/// Opted-in namespaces from a reflector store, each resolved once per version of the object.
pub struct KubeNamespaces {
    store: Store<Namespace>,
    ready: Arc<AtomicBool>,
    defaults: Defaults,
    /// The stored object a configuration was resolved from; a new object (any change) is a new
    /// `Arc` in the store, so pointer equality says whether the memo is current.
    resolved: Mutex<HashMap<String, Resolved>>,
}

/// A namespace object and the configuration resolved from it.
type Resolved = (Arc<Namespace>, Arc<NamespaceConfig>);

impl KubeNamespaces {
    /// Starts watching the namespaces labelled `jvm-guard.io/inject=enabled` (only those are
    /// cached: the apiserver filters) on the current tokio runtime. Watch errors are retried
    /// with backoff and logged.
    pub fn spawn(client: Client, defaults: Defaults) -> KubeNamespaces {
        let api: Api<Namespace> = Api::all(client);
        let (store, writer) = reflector::store();
        let selector = format!("{INJECT_LABEL}=enabled");
        let stream = watcher(api, watcher::Config::default().labels(&selector))
            .default_backoff()
            // Only labels and annotations matter; managedFields are most of an object's size.
            .modify(|ns| ns.managed_fields_mut().clear())
            .reflect(writer)
            .touched_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "namespace watch failed; retrying");
                }
            }
        });
        KubeNamespaces::from_store(store, defaults)
    }

    /// A lookup over an existing store, ready once the store has seen its first full list.
    pub fn from_store(store: Store<Namespace>, defaults: Defaults) -> KubeNamespaces {
        let ready = Arc::new(AtomicBool::new(false));
        let waiter = store.clone();
        let flag = ready.clone();
        tokio::spawn(async move {
            if waiter.wait_until_ready().await.is_ok() {
                flag.store(true, Ordering::Release);
                tracing::info!("namespace cache synced");
            }
        });
        KubeNamespaces {
            store,
            ready,
            defaults,
            resolved: Mutex::new(HashMap::new()),
        }
    }
}

impl NamespaceLookup for KubeNamespaces {
    fn get(&self, name: &str) -> Option<Arc<NamespaceConfig>> {
        let ns = self.store.get(&ObjectRef::new(name))?;
        if !is_opted_in(&ns) {
            return None;
        }
        let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        match resolved.get(name) {
            Some((seen, cfg)) if Arc::ptr_eq(seen, &ns) => Some(cfg.clone()),
            _ => {
                let cfg = config(name, &ns, &self.defaults);
                resolved.insert(name.to_string(), (ns, cfg.clone()));
                Some(cfg)
            }
        }
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn opted_in(&self) -> Option<BTreeSet<String>> {
        let state = self.store.state();
        let names = state.iter().filter(|ns| is_opted_in(ns));
        Some(names.filter_map(|ns| ns.metadata.name.clone()).collect())
    }

    /// The apiserver only calls for namespaces labelled to opt in: not knowing one means the
    /// watch has not caught up with the label yet.
    fn miss(&self, name: &str) -> Option<String> {
        Some(format!(
            "namespace {name} is not known as opted in yet (the label was added moments ago?); pod admitted unchanged: recreate it to have it guarded"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn ns(name: &str, labelled: bool, percentage: &str) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.to_string());
        if labelled {
            ns.metadata.labels = Some(BTreeMap::from([(INJECT_LABEL.into(), "enabled".into())]));
        }
        ns.metadata.annotations = Some(BTreeMap::from([(
            "jvm-guard.io/max-ram-percentage".into(),
            percentage.into(),
        )]));
        ns
    }

    async fn until_ready(lookup: &KubeNamespaces) {
        for _ in 0..200 {
            if lookup.ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("never ready");
    }

    #[tokio::test]
    async fn ready_after_the_first_list_and_follows_changes() {
        let (store, mut writer) = reflector::store();
        let lookup = KubeNamespaces::from_store(store, Defaults::default());
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(ns("shop", true, "60")));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!lookup.ready(), "not ready before the list is complete");
        assert!(
            lookup.get("shop").is_none(),
            "nothing is served before the list is complete"
        );

        writer.apply_watcher_event(&Event::InitDone);
        until_ready(&lookup).await;
        let first = lookup.get("shop").expect("opted in");
        assert!(
            Arc::ptr_eq(&first, &lookup.get("shop").unwrap()),
            "resolved once per version"
        );
        assert!(lookup.get("elsewhere").is_none());
        assert_eq!(
            lookup.opted_in(),
            Some(BTreeSet::from(["shop".to_string()]))
        );

        // An annotation change is a new object: a new configuration.
        writer.apply_watcher_event(&Event::Apply(ns("shop", true, "70")));
        let second = lookup.get("shop").unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_ne!(*first, *second);

        // Unlabelled (e.g. a stale event): not opted in. Deleted: gone.
        writer.apply_watcher_event(&Event::Apply(ns("shop", false, "70")));
        assert!(lookup.get("shop").is_none());
        assert_eq!(lookup.opted_in(), Some(BTreeSet::new()));
        writer.apply_watcher_event(&Event::Apply(ns("shop", true, "70")));
        writer.apply_watcher_event(&Event::Delete(ns("shop", true, "70")));
        assert!(lookup.get("shop").is_none());
    }
}
