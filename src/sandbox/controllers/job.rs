//! The Job controller: runs pods until `completions` succeeded (at most `parallelism` at once),
//! counts succeeded and failed pods, fails the Job past `backoffLimit`, and writes the
//! conditions the real controller writes (SuccessCriteriaMet then Complete; FailureTarget then
//! Failed with BackoffLimitExceeded).

use std::sync::Arc;

use serde_json::{Value, json};

use super::objects::{self as o};
use crate::sandbox::api::Cluster;
use crate::sandbox::meta;

const MANAGER: &str = "kube-controller-manager";

pub fn pass(c: &Arc<Cluster>) -> bool {
    let mut changed = false;
    let pods = o::list(c, "", "pods");
    for job in o::list(c, "batch", "jobs") {
        if meta::is_deleting(&job) {
            continue;
        }
        changed |= reconcile(c, &job, &pods);
    }
    changed
}

fn finished(job: &Value) -> bool {
    o::condition_true(job, "Complete") || o::condition_true(job, "Failed")
}

fn reconcile(c: &Cluster, job: &Arc<Value>, pods: &[Arc<Value>]) -> bool {
    let ns = meta::namespace(job);
    let owned: Vec<&Arc<Value>> = o::owned_by(pods, job)
        .into_iter()
        .filter(|p| meta::namespace(p) == ns)
        .collect();
    let succeeded = owned.iter().filter(|p| o::phase(p) == "Succeeded").count() as i64;
    // Restarts inside a pod (restartPolicy OnFailure) count towards the back-off limit too.
    let restarts: i64 = owned
        .iter()
        .map(|p| {
            p.pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
                        .sum::<i64>()
                })
                .unwrap_or(0)
        })
        .sum();
    let failed = owned.iter().filter(|p| o::phase(p) == "Failed").count() as i64;
    let active: Vec<&&Arc<Value>> = owned.iter().filter(|p| o::is_active(p)).collect();
    let ready = active.iter().filter(|p| o::is_ready(p)).count();
    let completions = o::i64_at(job, "/spec/completions");
    let parallelism = o::i64_at(job, "/spec/parallelism").unwrap_or(1).max(0);
    let backoff_limit = o::i64_at(job, "/spec/backoffLimit").unwrap_or(6);
    let suspended = job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
    let mut changed = false;
    let done = finished(job);
    let complete = match completions {
        Some(n) => succeeded >= n,
        // A work queue: done when one pod succeeded and none is still running.
        None => succeeded > 0 && active.is_empty(),
    };
    let failed_now = failed + restarts > backoff_limit;
    if !done && !complete && !failed_now && !suspended {
        let remaining = completions.map(|n| n - succeeded).unwrap_or(1);
        let want = parallelism.min(remaining).max(0) as usize;
        if active.len() < want
            && let Some(template) = job.pointer("/spec/template")
        {
            let name = meta::name(job);
            let uid = meta::uid(job);
            let labels = o::labels_with(
                template,
                &[
                    ("batch.kubernetes.io/controller-uid", uid),
                    ("batch.kubernetes.io/job-name", name),
                    ("controller-uid", uid),
                    ("job-name", name),
                ],
            );
            for _ in active.len()..want {
                let pod = o::pod_from_template(
                    template,
                    ns,
                    None,
                    &format!("{name}-"),
                    labels.clone(),
                    o::controller_ref(job, "batch/v1", "Job"),
                );
                match o::create(c, MANAGER, "", "pods", ns, pod) {
                    Ok(_) => changed = true,
                    Err(e) => {
                        o::warn("job", job, &e);
                        break;
                    }
                }
            }
        }
    }
    if (failed_now || suspended) && !done {
        // Remaining pods stop: the Job failed, or is suspended.
        for p in &active {
            changed |= o::delete(c, "", "pods", p, None).is_ok();
        }
    }
    let mut holder = json!({"status": job.get("status").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}))});
    let st = &mut holder["status"];
    if st.get("startTime").is_none() && !suspended {
        st["startTime"] = json!(meta::now());
    }
    st["active"] = json!(active.len());
    st["ready"] = json!(ready);
    st["succeeded"] = json!(succeeded);
    st["failed"] = json!(failed);
    st["terminating"] = json!(owned.iter().filter(|p| meta::is_deleting(p)).count());
    st["uncountedTerminatedPods"] = json!({});
    if !done && complete {
        let msg = "Reached expected number of succeeded pods";
        o::set_condition(
            &mut holder,
            "SuccessCriteriaMet",
            "True",
            "CompletionsReached",
            msg,
        );
        o::set_condition(&mut holder, "Complete", "True", "CompletionsReached", msg);
        holder["status"]["completionTime"] = json!(meta::now());
    } else if !done && failed_now {
        let msg = "Job has reached the specified backoff limit";
        o::set_condition(
            &mut holder,
            "FailureTarget",
            "True",
            "BackoffLimitExceeded",
            msg,
        );
        o::set_condition(&mut holder, "Failed", "True", "BackoffLimitExceeded", msg);
    } else if suspended && !done {
        o::set_condition(
            &mut holder,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
        );
    } else if !done && o::condition_true(job, "Suspended") {
        o::set_condition(
            &mut holder,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
        );
    }
    let status = holder["status"].take();
    if job.get("status") != Some(&status) {
        match o::update_status(c, MANAGER, "batch", "jobs", job, |x| {
            x["status"] = status;
        }) {
            Ok(_) => changed = true,
            Err(e) => o::warn("job", job, &e),
        }
    }
    changed
}
