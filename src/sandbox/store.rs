//! The object store: objects keyed by resource, namespace and name; one cluster-wide monotonic
//! resourceVersion; a bounded event history for watches; a broadcast to live watchers.
//!
//! Every write happens under one lock so that resourceVersions, the history and the broadcast
//! stay in the same order. Objects are `Arc<Value>`: readers clone a pointer, never the object.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use serde_json::Value;
use tokio::sync::broadcast;

/// `ADDED`, `MODIFIED` or `DELETED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    /// The resource's store key (`plural.group`).
    pub resource: String,
    pub namespace: String,
    pub kind: EventType,
    /// The object after the change (for DELETED: the last state, with the deletion's resourceVersion).
    pub object: Arc<Value>,
    /// The object before the change (none for ADDED).
    pub prev: Option<Arc<Value>>,
}

/// What a transaction closure decides to do with the object.
pub enum Outcome {
    Put(Value),
    Delete,
    Keep,
}

/// What a transaction did.
#[derive(Debug, Clone)]
pub enum Written {
    Created(Arc<Value>),
    Updated(Arc<Value>),
    /// The closure's result equalled the stored object: nothing written, no event.
    Unchanged(Arc<Value>),
    Deleted(Arc<Value>),
    /// No object and nothing to write.
    Nothing,
}

impl Written {
    pub fn object(&self) -> Option<&Arc<Value>> {
        match self {
            Written::Created(o)
            | Written::Updated(o)
            | Written::Unchanged(o)
            | Written::Deleted(o) => Some(o),
            Written::Nothing => None,
        }
    }
}

/// The watch history was compacted past the requested resourceVersion.
#[derive(Debug, Clone, Copy)]
pub struct TooOld {
    pub requested: u64,
    pub oldest: u64,
}

/// Missed events still in the history, then the live receiver.
pub type Subscription = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

type Objects = BTreeMap<(String, String), Arc<Value>>;

struct State {
    rv: u64,
    objects: HashMap<String, Objects>,
    history: VecDeque<Arc<Event>>,
    /// Every event with rv <= compacted is gone from the history.
    compacted: u64,
}

pub struct Store {
    state: RwLock<State>,
    tx: broadcast::Sender<Arc<Event>>,
    history_cap: usize,
}

pub const DEFAULT_HISTORY: usize = 10_000;

impl Store {
    pub fn new(history_cap: usize) -> Self {
        let (tx, _) = broadcast::channel(16_384);
        Store {
            state: RwLock::new(State {
                rv: 1,
                objects: HashMap::new(),
                history: VecDeque::new(),
                compacted: 1,
            }),
            tx,
            history_cap: history_cap.max(1),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The current (latest) resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.read().rv
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let st = self.read();
        st.objects
            .get(resource)?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a resource (in one namespace, or all), in key order, with the list's resourceVersion.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let st = self.read();
        let items = match st.objects.get(resource) {
            None => vec![],
            Some(objs) => match namespace {
                None => objs.values().cloned().collect(),
                Some(ns) => objs
                    .range((ns.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(_, v)| v.clone())
                    .collect(),
            },
        };
        (items, st.rv)
    }

    /// Every resource key with at least one object.
    pub fn resources(&self) -> Vec<String> {
        self.read()
            .objects
            .iter()
            .filter(|(_, o)| !o.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Number of objects in a namespace across all resources.
    pub fn count_in_namespace(&self, namespace: &str) -> usize {
        let st = self.read();
        st.objects
            .values()
            .map(|objs| {
                objs.range((namespace.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == namespace)
                    .count()
            })
            .sum()
    }

    /// Read-modify-write one object atomically. `f` sees the stored object (if any) and decides.
    /// A `Put` whose result equals the stored object (ignoring `metadata.resourceVersion`) is a no-op.
    /// With `dry_run`, nothing is stored and no event is sent; the returned object is what would be.
    pub fn transact<E>(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        dry_run: bool,
        f: impl FnOnce(Option<&Arc<Value>>) -> Result<Outcome, E>,
    ) -> Result<Written, E> {
        let mut st = self.write();
        let key = (namespace.to_string(), name.to_string());
        let existing = st.objects.get(resource).and_then(|o| o.get(&key)).cloned();
        let outcome = f(existing.as_ref())?;
        Ok(match outcome {
            Outcome::Keep => match existing {
                Some(o) => Written::Unchanged(o),
                None => Written::Nothing,
            },
            Outcome::Put(mut obj) => {
                if let Some(old) = &existing
                    && same_ignoring_rv(old, &obj)
                {
                    return Ok(Written::Unchanged(old.clone()));
                }
                if dry_run {
                    if let Some(old) = &existing {
                        set_rv(&mut obj, &rv_of(old));
                    }
                    let obj = Arc::new(obj);
                    return Ok(if existing.is_some() {
                        Written::Updated(obj)
                    } else {
                        Written::Created(obj)
                    });
                }
                st.rv += 1;
                let rv = st.rv;
                set_rv(&mut obj, &rv.to_string());
                let obj = Arc::new(obj);
                st.objects
                    .entry(resource.to_string())
                    .or_default()
                    .insert(key, obj.clone());
                let kind = if existing.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                self.record(
                    &mut st,
                    resource,
                    namespace,
                    kind,
                    obj.clone(),
                    existing.clone(),
                );
                if existing.is_some() {
                    Written::Updated(obj)
                } else {
                    Written::Created(obj)
                }
            }
            Outcome::Delete => match existing {
                None => Written::Nothing,
                Some(old) => {
                    if dry_run {
                        return Ok(Written::Deleted(old));
                    }
                    st.rv += 1;
                    let rv = st.rv;
                    if let Some(objs) = st.objects.get_mut(resource) {
                        objs.remove(&key);
                    }
                    let mut last = (*old).clone();
                    set_rv(&mut last, &rv.to_string());
                    let last = Arc::new(last);
                    self.record(
                        &mut st,
                        resource,
                        namespace,
                        EventType::Deleted,
                        last.clone(),
                        Some(old),
                    );
                    Written::Deleted(last)
                }
            },
        })
    }

    fn record(
        &self,
        st: &mut State,
        resource: &str,
        namespace: &str,
        kind: EventType,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) {
        let ev = Arc::new(Event {
            rv: st.rv,
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            kind,
            object,
            prev,
        });
        st.history.push_back(ev.clone());
        while st.history.len() > self.history_cap {
            if let Some(old) = st.history.pop_front() {
                st.compacted = old.rv;
            }
        }
        // No receivers is fine.
        let _ = self.tx.send(ev);
    }

    /// Forget the whole event history: every watch from an older resourceVersion now gets 410 Gone.
    pub fn compact(&self) {
        let mut st = self.write();
        st.history.clear();
        st.compacted = st.rv;
    }

    /// Subscribe to changes after `from_rv`: the missed events of the resource still in the history,
    /// then a live receiver, with no gap and no duplicate. 410 if the history no longer reaches back.
    pub fn watch_from(&self, resource: &str, from_rv: u64) -> Result<Subscription, TooOld> {
        let st = self.read();
        if from_rv < st.compacted {
            return Err(TooOld {
                requested: from_rv,
                oldest: st.compacted,
            });
        }
        let backlog = st
            .history
            .iter()
            .filter(|e| e.rv > from_rv && e.resource == resource)
            .cloned()
            .collect();
        Ok((backlog, self.tx.subscribe()))
    }

    /// Subscribe to every change from now on, together with the current objects of a resource.
    pub fn snapshot_and_subscribe(
        &self,
        resource: &str,
        namespace: Option<&str>,
    ) -> (Vec<Arc<Value>>, u64, broadcast::Receiver<Arc<Event>>) {
        let st = self.read();
        let rx = self.tx.subscribe();
        let items = match st.objects.get(resource) {
            None => vec![],
            Some(objs) => objs
                .iter()
                .filter(|((n, _), _)| namespace.is_none_or(|ns| ns == n))
                .map(|(_, v)| v.clone())
                .collect(),
        };
        (items, st.rv, rx)
    }

    /// A receiver of every change from now on (for controllers).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// The oldest resourceVersion a watch can still start from.
    pub fn compacted_rv(&self) -> u64 {
        self.read().compacted
    }

    /// Number of stored objects (all resources).
    pub fn len(&self) -> usize {
        self.read().objects.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub fn rv_of(obj: &Value) -> String {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

pub fn set_rv(obj: &mut Value, rv: &str) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

fn same_ignoring_rv(stored: &Value, new: &Value) -> bool {
    let (Some(a), Some(b)) = (stored.as_object(), new.as_object()) else {
        return stored == new;
    };
    if a.len() != b.len() {
        return false;
    }
    for (k, va) in a {
        let Some(vb) = b.get(k) else { return false };
        if k == "metadata" {
            let (Some(ma), Some(mb)) = (va.as_object(), vb.as_object()) else {
                return va == vb;
            };
            let strip = |m: &serde_json::Map<String, Value>| {
                m.iter()
                    .filter(|(k, _)| k.as_str() != "resourceVersion")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<BTreeMap<_, _>>()
            };
            if strip(ma) != strip(mb) {
                return false;
            }
        } else if va != vb {
            return false;
        }
    }
    true
}
