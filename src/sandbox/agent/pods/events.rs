//! The Events a kubelet records about its pods' containers: reporting controller `kubelet`,
//! reporting instance the node, regarding the pod with the container's field path. One Recorder
//! per node, shared by every pod of the node, so that repeats are aggregated into series.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::PodRef;
use super::restart::Role;
use crate::sandbox::agent::Host;

pub struct Events {
    by_node: HashMap<String, Recorder>,
    client: kube::Client,
}

/// What an Event is about: a pod, or one of its containers.
#[derive(Clone, Debug)]
pub struct Subject {
    pub reference: ObjectReference,
    pub node: String,
    pub what: String,
}

impl Subject {
    pub fn pod(pod: &PodRef) -> Subject {
        Subject {
            reference: pod.object_ref(None),
            node: pod.node.clone(),
            what: pod.key(),
        }
    }

    pub fn container(pod: &PodRef, role: Role, name: &str) -> Subject {
        let list = match role {
            Role::Main => "containers",
            Role::Init | Role::Sidecar => "initContainers",
        };
        Subject {
            reference: pod.object_ref(Some(format!("spec.{list}{{{name}}}"))),
            node: pod.node.clone(),
            what: format!("{}/{name}", pod.key()),
        }
    }
}

impl Events {
    pub fn new(host: &Host) -> Events {
        let by_node = host
            .profile
            .nodes
            .iter()
            .map(|n| {
                let reporter = Reporter {
                    controller: "kubelet".into(),
                    instance: Some(n.name.clone()),
                };
                (n.name.clone(), Recorder::new(host.client.clone(), reporter))
            })
            .collect();
        Events {
            by_node,
            client: host.client.clone(),
        }
    }

    fn recorder(&self, node: &str) -> Recorder {
        self.by_node.get(node).cloned().unwrap_or_else(|| {
            let reporter = Reporter {
                controller: "kubelet".into(),
                instance: Some(node.to_string()),
            };
            Recorder::new(self.client.clone(), reporter)
        })
    }

    pub async fn normal(&self, subject: &Subject, reason: &str, note: String) {
        self.publish(subject, EventType::Normal, reason, note).await;
    }

    pub async fn warning(&self, subject: &Subject, reason: &str, note: String) {
        self.publish(subject, EventType::Warning, reason, note)
            .await;
    }

    /// Publishes; a failure is logged only (an Event is never worth failing a pod for).
    async fn publish(&self, subject: &Subject, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self
            .recorder(&subject.node)
            .publish(&ev, &subject.reference)
            .await
        {
            tracing::debug!(subject = %subject.what, reason, error = %e, "cannot record the event");
        }
    }
}
