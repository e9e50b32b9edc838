//! The CronJob controller: at each scheduled time (the most recent missed one, like the real
//! controller) creates the Job `<cronjob>-<minutes since epoch>`, unless `spec.suspend`; honours
//! concurrencyPolicy and the history limits; status lastScheduleTime, lastSuccessfulTime, active.

use std::sync::Arc;

use serde_json::{Value, json};

use super::cron::Schedule;
use super::objects::{self as o};
use crate::sandbox::api::Cluster;
use crate::sandbox::meta;

const MANAGER: &str = "kube-controller-manager";

pub fn pass(c: &Arc<Cluster>) -> bool {
    let mut changed = false;
    let jobs = o::list(c, "batch", "jobs");
    for cj in o::list(c, "batch", "cronjobs") {
        if meta::is_deleting(&cj) {
            continue;
        }
        changed |= reconcile(c, &cj, &jobs);
    }
    changed
}

fn job_finished(job: &Value) -> Option<&'static str> {
    if o::condition_true(job, "Complete") {
        Some("Complete")
    } else if o::condition_true(job, "Failed") {
        Some("Failed")
    } else {
        None
    }
}

fn timestamp(v: &Value, ptr: &str) -> Option<jiff::Timestamp> {
    o::str_at(v, ptr).parse().ok()
}

fn reconcile(c: &Cluster, cj: &Arc<Value>, jobs: &[Arc<Value>]) -> bool {
    let ns = meta::namespace(cj);
    let name = meta::name(cj);
    let owned: Vec<&Arc<Value>> = o::owned_by(jobs, cj)
        .into_iter()
        .filter(|j| meta::namespace(j) == ns && !meta::is_deleting(j))
        .collect();
    let mut changed = false;
    let active: Vec<&&Arc<Value>> = owned.iter().filter(|j| job_finished(j).is_none()).collect();
    let suspended = cj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
    let mut last_schedule = o::str_at(cj, "/status/lastScheduleTime").to_string();
    let mut new_job: Option<Arc<Value>> = None;
    if !suspended {
        match Schedule::parse(o::str_at(cj, "/spec/schedule")) {
            Err(e) => tracing::debug!(cronjob = name, error = %e, "unparsable schedule"),
            Ok(schedule) => {
                let since = timestamp(cj, "/status/lastScheduleTime")
                    .or_else(|| timestamp(cj, "/metadata/creationTimestamp"));
                let now = jiff::Timestamp::now();
                let due = since.and_then(|s| schedule.latest_between(s, now));
                let too_late = due.is_some_and(|t| {
                    o::i64_at(cj, "/spec/startingDeadlineSeconds")
                        .is_some_and(|d| now.as_second() - t.as_second() > d)
                });
                if let Some(t) = due.filter(|_| !too_late) {
                    let policy = o::str_at(cj, "/spec/concurrencyPolicy");
                    let blocked = policy == "Forbid" && !active.is_empty();
                    if policy == "Replace" {
                        for j in &active {
                            changed |= o::delete(c, "batch", "jobs", j, None).is_ok();
                        }
                    }
                    if !blocked {
                        match create_job(c, cj, t) {
                            Ok(j) => {
                                changed = true;
                                new_job = Some(j);
                            }
                            Err(e) if e.code == 409 => {}
                            Err(e) => o::warn("cronjob", cj, &e),
                        }
                    }
                    last_schedule = t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
                }
            }
        }
    }
    // History limits.
    for (state, default_limit, field) in [
        ("Complete", 3, "successfulJobsHistoryLimit"),
        ("Failed", 1, "failedJobsHistoryLimit"),
    ] {
        let limit = o::i64_at(cj, &format!("/spec/{field}"))
            .unwrap_or(default_limit)
            .max(0) as usize;
        let mut done: Vec<&&Arc<Value>> = owned
            .iter()
            .filter(|j| job_finished(j) == Some(state))
            .collect();
        if done.len() > limit {
            done.sort_by_key(|j| o::str_at(j, "/metadata/creationTimestamp").to_string());
            for j in done.iter().take(done.len() - limit) {
                changed |= o::delete(c, "batch", "jobs", j, None).is_ok();
            }
        }
    }
    let mut refs: Vec<Value> = active.iter().map(|j| job_ref(j)).collect();
    if let Some(j) = &new_job {
        refs.push(job_ref(j));
    }
    let last_success = owned
        .iter()
        .filter(|j| job_finished(j) == Some("Complete"))
        .map(|j| o::str_at(j, "/status/completionTime").to_string())
        .max();
    let mut status = json!({});
    if !refs.is_empty() {
        status["active"] = json!(refs);
    }
    if !last_schedule.is_empty() {
        status["lastScheduleTime"] = json!(last_schedule);
    }
    match last_success.filter(|s| !s.is_empty()) {
        Some(s) => status["lastSuccessfulTime"] = json!(s),
        None => {
            if let Some(prev) = cj.pointer("/status/lastSuccessfulTime") {
                status["lastSuccessfulTime"] = prev.clone();
            }
        }
    }
    let current = cj.get("status").cloned().unwrap_or_else(|| json!({}));
    if current != status {
        match o::update_status(c, MANAGER, "batch", "cronjobs", cj, |x| {
            x["status"] = status;
        }) {
            Ok(_) => changed = true,
            Err(e) => o::warn("cronjob", cj, &e),
        }
    }
    changed
}

fn job_ref(j: &Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "name": meta::name(j), "namespace": meta::namespace(j),
           "uid": meta::uid(j), "resourceVersion": o::str_at(j, "/metadata/resourceVersion")})
}

fn create_job(
    c: &Cluster,
    cj: &Value,
    at: jiff::Timestamp,
) -> Result<Arc<Value>, crate::sandbox::errors::ApiError> {
    let ns = meta::namespace(cj);
    let name = format!("{}-{}", meta::name(cj), at.as_second() / 60);
    let tmpl = cj
        .pointer("/spec/jobTemplate")
        .cloned()
        .unwrap_or(json!({}));
    let mut labels = tmpl
        .pointer("/metadata/labels")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let mut annotations = tmpl
        .pointer("/metadata/annotations")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"] =
        json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    if labels.as_object().is_some_and(|l| l.is_empty()) {
        labels = json!({});
    }
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations,
                     "ownerReferences": [o::controller_ref(cj, "batch/v1", "CronJob")]},
        "spec": tmpl.get("spec").cloned().unwrap_or(json!({})),
    });
    o::create(c, MANAGER, "batch", "jobs", ns, job)
}
