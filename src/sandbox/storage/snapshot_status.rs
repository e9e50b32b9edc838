//! A VolumeSnapshot's status as the snapshot-controller derives it from its content's
//! (`updateSnapshotStatus`): the bound content's name, `creationTime` (int64 ns → a Time),
//! `readyToUse`, `restoreSize` (int64 bytes → a BinarySI Quantity) and the content's error. Only
//! what changed is written, so a status already in step is never rewritten.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::crd::{SnapshotError, VolumeSnapshotContent, VolumeSnapshotStatus};
use super::names;

/// Now, as an API `Time`.
pub fn now() -> Value {
    json!(Time(Timestamp::now()))
}

/// Now, in nanoseconds since the epoch (a content's `creationTime`).
pub fn now_ns() -> i64 {
    i64::try_from(Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

fn time_of(ns: i64) -> Option<Value> {
    Timestamp::from_nanosecond(i128::from(ns))
        .ok()
        .map(|t| json!(Time(t)))
}

fn is_zero(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> bool {
    names::bytes_of(&q.0) == Some(0)
}

/// The merge patch that brings `current` in step with the content; None when it already is.
pub fn patch(
    current: Option<&VolumeSnapshotStatus>,
    content: &VolumeSnapshotContent,
) -> Option<Value> {
    let cs = content.status.as_ref();
    let created = cs.and_then(|s| s.creation_time).and_then(time_of);
    let size = cs.and_then(|s| s.restore_size).filter(|s| *s >= 0);
    let ready = cs.and_then(|s| s.ready_to_use).unwrap_or(false);
    let error: Option<&SnapshotError> = cs.and_then(|s| s.error.as_ref());
    let name = content.metadata.name.clone().unwrap_or_default();
    let size_q = |b: i64| json!(names::binary_si(b.unsigned_abs()));
    let mut p = Map::new();
    let Some(cur) = current else {
        p.insert("boundVolumeSnapshotContentName".into(), json!(name));
        p.insert("readyToUse".into(), json!(ready));
        if let Some(t) = created {
            p.insert("creationTime".into(), t);
        }
        if let Some(b) = size {
            p.insert("restoreSize".into(), size_q(b));
        }
        if let Some(e) = error {
            p.insert("error".into(), json!(e));
        }
        return Some(Value::Object(p));
    };
    if cur.bound_volume_snapshot_content_name.is_none() {
        p.insert("boundVolumeSnapshotContentName".into(), json!(name));
    }
    if cur.creation_time.is_none()
        && let Some(t) = created
    {
        p.insert("creationTime".into(), t);
    }
    if cur.ready_to_use != Some(ready) {
        p.insert("readyToUse".into(), json!(ready));
    }
    if let Some(b) = size
        && (cur.restore_size.is_none() || (cur.restore_size.as_ref().is_some_and(is_zero) && b > 0))
    {
        p.insert("restoreSize".into(), size_q(b));
    }
    let error_now = if ready { None } else { error };
    if cur.error.as_ref() != error_now {
        p.insert("error".into(), error_now.map_or(Value::Null, |e| json!(e)));
    }
    (!p.is_empty()).then_some(Value::Object(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(status: Value) -> VolumeSnapshotContent {
        serde_json::from_value(json!({"metadata": {"name": "snapcontent-1"}, "status": status}))
            .expect("content")
    }

    #[test]
    fn a_new_status_mirrors_the_content() {
        let c = content(
            json!({"creationTime": 1_700_000_000_000_000_000i64, "readyToUse": true,
                               "restoreSize": 1073741824i64, "snapshotHandle": "snap-1"}),
        );
        let p = patch(None, &c).expect("a patch");
        assert_eq!(p["boundVolumeSnapshotContentName"], "snapcontent-1");
        assert_eq!(p["readyToUse"], true);
        assert_eq!(p["restoreSize"], "1Gi");
        assert_eq!(p["creationTime"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn a_status_in_step_is_not_rewritten_and_readiness_clears_the_error() {
        let c = content(
            json!({"creationTime": 1_700_000_000_000_000_000i64, "readyToUse": true,
                               "restoreSize": 1073741824i64}),
        );
        let cur: VolumeSnapshotStatus = serde_json::from_value(json!({
            "boundVolumeSnapshotContentName": "snapcontent-1", "creationTime": "2023-11-14T22:13:20Z",
            "readyToUse": true, "restoreSize": "1Gi"})).expect("status");
        assert_eq!(patch(Some(&cur), &c), None);
        let failing: VolumeSnapshotStatus = serde_json::from_value(json!({
            "boundVolumeSnapshotContentName": "snapcontent-1", "readyToUse": false,
            "error": {"message": "m", "time": "2023-11-14T22:13:20Z"}}))
        .expect("status");
        let p = patch(Some(&failing), &c).expect("a patch");
        assert_eq!(p["readyToUse"], true);
        assert_eq!(p["error"], Value::Null);
        assert_eq!(p["restoreSize"], "1Gi");
    }

    #[test]
    fn a_contents_error_reaches_the_snapshot_once() {
        let err =
            json!({"message": "Failed to create snapshot: boom", "time": "2023-11-14T22:13:20Z"});
        let c = content(json!({"readyToUse": false, "error": err}));
        let cur: VolumeSnapshotStatus = serde_json::from_value(json!({
            "boundVolumeSnapshotContentName": "snapcontent-1", "readyToUse": false}))
        .expect("status");
        let p = patch(Some(&cur), &c).expect("a patch");
        assert_eq!(p["error"]["message"], "Failed to create snapshot: boom");
        let mirrored: VolumeSnapshotStatus = serde_json::from_value(json!({
            "boundVolumeSnapshotContentName": "snapcontent-1", "readyToUse": false, "error": err}))
        .expect("status");
        assert_eq!(patch(Some(&mirrored), &c), None);
    }
}
