//! How many HTTP requests a simulated cluster served, per verb: what a benchmark divides by the
//! objects it moved to tell how chatty a client is. Requests through the in-process API (seeding,
//! the simulated controllers) are not counted: only what came over the wire.

use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters (relaxed atomics: a count, not a synchronisation point).
#[derive(Debug, Default)]
pub struct Requests {
    total: AtomicU64,
    get: AtomicU64,
    list: AtomicU64,
    watch: AtomicU64,
    create: AtomicU64,
    update: AtomicU64,
    patch: AtomicU64,
    delete: AtomicU64,
}

/// The verb of a request on a resource, as the apiserver's audit log names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    /// `delete` and `deletecollection`.
    Delete,
}

impl Requests {
    /// One request arrived (any path: discovery, openapi and health included).
    pub fn arrived(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// The request was on a resource, with this verb.
    pub fn verb(&self, verb: Verb) {
        let c = match verb {
            Verb::Get => &self.get,
            Verb::List => &self.list,
            Verb::Watch => &self.watch,
            Verb::Create => &self.create,
            Verb::Update => &self.update,
            Verb::Patch => &self.patch,
            Verb::Delete => &self.delete,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> RequestCounts {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RequestCounts {
            total: l(&self.total),
            get: l(&self.get),
            list: l(&self.list),
            watch: l(&self.watch),
            create: l(&self.create),
            update: l(&self.update),
            patch: l(&self.patch),
            delete: l(&self.delete),
        }
    }
}

/// Counts at one instant; subtract two to get what happened in between.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub total: u64,
    pub get: u64,
    pub list: u64,
    pub watch: u64,
    pub create: u64,
    pub update: u64,
    pub patch: u64,
    pub delete: u64,
}

impl RequestCounts {
    /// Requests that were not on a resource: discovery, openapi, version, health.
    pub fn other(&self) -> u64 {
        self.total.saturating_sub(
            self.get
                + self.list
                + self.watch
                + self.create
                + self.update
                + self.patch
                + self.delete,
        )
    }
}

impl std::ops::Sub for RequestCounts {
    type Output = RequestCounts;

    fn sub(self, before: RequestCounts) -> RequestCounts {
        RequestCounts {
            total: self.total.saturating_sub(before.total),
            get: self.get.saturating_sub(before.get),
            list: self.list.saturating_sub(before.list),
            watch: self.watch.saturating_sub(before.watch),
            create: self.create.saturating_sub(before.create),
            update: self.update.saturating_sub(before.update),
            patch: self.patch.saturating_sub(before.patch),
            delete: self.delete.saturating_sub(before.delete),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_verb_and_subtracts() {
        let r = Requests::default();
        r.arrived();
        r.verb(Verb::Get);
        let before = r.snapshot();
        for v in [Verb::Patch, Verb::Patch, Verb::List] {
            r.arrived();
            r.verb(v);
        }
        r.arrived(); // discovery
        let d = r.snapshot() - before;
        assert_eq!((d.total, d.patch, d.list, d.get), (4, 2, 1, 0));
        assert_eq!(d.other(), 1);
    }
}
