//! Events in the words of the component the agent stands in for (the external-provisioner, the
//! snapshot-controller, the csi-snapshotter), through kube's [`Recorder`].
//!
//! kube's Recorder folds every publish with the same object, reason and action into one Event
//! series and keeps the first note; client-go, which the upstream components use, starts a new
//! Event when the message changes. So a recorder is kept per object and reason, and replaced
//! when the note changes: repeats of one message count up one Event, a new message is a new Event.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// More (object, reason) pairs than this and the cache starts over (a repeat then opens a new
/// Event instead of counting up the old one).
const MAX_KEYS: usize = 4096;

pub struct Events {
    client: kube::Client,
    reporter: Reporter,
    cluster: String,
    recorders: Mutex<HashMap<(String, String), (String, Recorder)>>,
}

impl Events {
    /// `controller` is the reporting component (`csi-provisioner`, `snapshot-controller`, ...).
    pub fn new(client: &kube::Client, cluster: &str, controller: &str) -> Events {
        Events {
            client: client.clone(),
            reporter: Reporter {
                controller: controller.to_string(),
                instance: Some(format!("{controller}-{cluster}-node-agent")),
            },
            cluster: cluster.to_string(),
            recorders: Mutex::new(HashMap::new()),
        }
    }

    fn recorder_for(&self, key: (String, String), note: &str) -> Recorder {
        let mut map = self.recorders.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((n, r)) = map.get(&key)
            && n == note
        {
            return r.clone();
        }
        if map.len() >= MAX_KEYS {
            map.clear();
        }
        let r = Recorder::new(self.client.clone(), self.reporter.clone());
        map.insert(key, (note.to_string(), r.clone()));
        r
    }

    async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let id = regarding
            .uid
            .clone()
            .or_else(|| regarding.name.clone())
            .unwrap_or_default();
        let recorder = self.recorder_for((id, reason.to_string()), &note);
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        // Best effort, as for the upstream components: an Event lost is no reason to stop.
        if let Err(e) = recorder.publish(&ev, regarding).await {
            tracing::debug!(cluster = %self.cluster, reason, error = %e, "cannot publish an Event");
        }
    }

    pub async fn normal(
        &self,
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(regarding, EventType::Normal, reason, action, note)
            .await;
    }

    pub async fn warning(
        &self,
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(regarding, EventType::Warning, reason, action, note)
            .await;
    }
}
