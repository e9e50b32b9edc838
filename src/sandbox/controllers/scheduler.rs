//! The scheduler: binds each pending pod to a node that passes the real filters the sandbox
//! models (unschedulable nodes, nodeSelector and required node affinity, NoSchedule taints,
//! CPU/memory requests against allocatable minus what is already placed, volume binding), picking
//! the least-loaded one. A pod that fits nowhere stays Pending with PodScheduled=False,
//! reason Unschedulable, and the scheduler's own message format.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};

use super::objects::{self as o};
use crate::sandbox::api::Cluster;
use crate::sandbox::meta;

const MANAGER: &str = "default-scheduler";

/// Why a node cannot take a pod, worded as the scheduler's filter plugins word it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    Unschedulable,
    Affinity,
    Taint(String),
    Resources(Vec<&'static str>),
    VolumeAffinity,
}

impl Misfit {
    fn reasons(&self) -> Vec<String> {
        match self {
            Misfit::Unschedulable => vec!["node(s) were unschedulable".into()],
            Misfit::Affinity => vec!["node(s) didn't match Pod's node affinity/selector".into()],
            Misfit::Taint(t) => vec![format!("node(s) had untolerated taint {{{t}}}")],
            Misfit::Resources(r) => r.iter().map(|x| format!("Insufficient {x}")).collect(),
            Misfit::VolumeAffinity => vec!["node(s) had volume node affinity conflict".into()],
        }
    }

    /// Only a lack of resources could be solved by preempting other pods.
    fn preemption_may_help(&self) -> bool {
        matches!(self, Misfit::Resources(_))
    }
}

/// CPU in millicores.
pub fn cpu_millis(q: &str) -> Option<i64> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse().ok();
    }
    crate::migrate::plan::quantity_bytes(&format!("{q}k"))
        .map(|x| i64::try_from(x).unwrap_or(i64::MAX))
}

pub fn memory_bytes(q: &str) -> Option<i64> {
    crate::migrate::plan::quantity_bytes(q).map(|x| i64::try_from(x).unwrap_or(i64::MAX))
}

/// A pod's (cpu millis, memory bytes) requests: each container's requests (limits when a request
/// is absent, as the apiserver defaults it), the largest init container counting if larger.
pub fn requests(pod: &Value) -> (i64, i64) {
    let of = |cs: Option<&Value>, f: &dyn Fn(&str) -> Option<i64>, res: &str| -> Vec<i64> {
        cs.and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        c.pointer(&format!("/resources/requests/{res}"))
                            .or_else(|| c.pointer(&format!("/resources/limits/{res}")))
                            .and_then(|q| match q {
                                Value::String(s) => f(s),
                                Value::Number(n) => f(&n.to_string()),
                                _ => None,
                            })
                            .unwrap_or(0)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let total = |res: &str, f: &dyn Fn(&str) -> Option<i64>| {
        let main: i64 = of(pod.pointer("/spec/containers"), f, res).iter().sum();
        let init = of(pod.pointer("/spec/initContainers"), f, res)
            .into_iter()
            .max()
            .unwrap_or(0);
        main.max(init)
    };
    (total("cpu", &cpu_millis), total("memory", &memory_bytes))
}

fn node_label<'a>(node: &'a Value, key: &str) -> Option<&'a str> {
    node.pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

/// One `matchExpressions`/`matchFields` requirement against a node.
fn requirement_holds(node: &Value, req: &Value, field: bool) -> bool {
    let key = o::str_at(req, "/key");
    let value = if field {
        (key == "metadata.name").then(|| meta::name(node))
    } else {
        node_label(node, key)
    };
    let values: Vec<&str> = req
        .get("values")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match o::str_at(req, "/operator") {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// A NodeSelector (terms ORed, requirements within a term ANDed).
pub fn node_selector_matches(node: &Value, selector: &Value) -> bool {
    let Some(terms) = selector.get("nodeSelectorTerms").and_then(Value::as_array) else {
        return true;
    };
    terms.iter().any(|t| {
        let exprs = t.get("matchExpressions").and_then(Value::as_array);
        let fields = t.get("matchFields").and_then(Value::as_array);
        if exprs.is_none_or(|e| e.is_empty()) && fields.is_none_or(|f| f.is_empty()) {
            return false;
        }
        exprs.is_none_or(|e| e.iter().all(|r| requirement_holds(node, r, false)))
            && fields.is_none_or(|f| f.iter().all(|r| requirement_holds(node, r, true)))
    })
}

fn tolerates(pod: &Value, taint: &Value) -> bool {
    let tolerations = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let key = o::str_at(taint, "/key");
    let value = o::str_at(taint, "/value");
    let effect = o::str_at(taint, "/effect");
    tolerations.iter().any(|t| {
        let t_effect = o::str_at(t, "/effect");
        let t_key = o::str_at(t, "/key");
        let effect_ok = t_effect.is_empty() || t_effect == effect;
        let key_ok = t_key.is_empty() || t_key == key;
        let value_ok = match o::str_at(t, "/operator") {
            "Exists" => true,
            _ => o::str_at(t, "/value") == value,
        };
        effect_ok && key_ok && value_ok
    })
}

/// The filters that depend only on the pod and the node (not on other pods or volumes).
pub fn placement_fits(pod: &Value, node: &Value) -> Result<(), Misfit> {
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        let tolerated = tolerates(
            pod,
            &json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}),
        );
        if !tolerated {
            return Err(Misfit::Unschedulable);
        }
    }
    if let Some(sel) = pod.pointer("/spec/nodeSelector").and_then(Value::as_object)
        && !sel.iter().all(|(k, v)| node_label(node, k) == v.as_str())
    {
        return Err(Misfit::Affinity);
    }
    if let Some(req) =
        pod.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution")
        && !node_selector_matches(node, req)
    {
        return Err(Misfit::Affinity);
    }
    if let Some(taints) = node.pointer("/spec/taints").and_then(Value::as_array) {
        for t in taints {
            let effect = o::str_at(t, "/effect");
            if matches!(effect, "NoSchedule" | "NoExecute") && !tolerates(pod, t) {
                return Err(Misfit::Taint(format!(
                    "{}: {}",
                    o::str_at(t, "/key"),
                    o::str_at(t, "/value")
                )));
            }
        }
    }
    Ok(())
}

fn allocatable(node: &Value) -> (i64, i64) {
    let cpu = cpu_millis(o::str_at(node, "/status/allocatable/cpu")).unwrap_or(0);
    let mem = memory_bytes(o::str_at(node, "/status/allocatable/memory")).unwrap_or(0);
    (cpu, mem)
}

/// What the pod's claims allow: Err(message) while a claim blocks scheduling; otherwise the PVs
/// whose node affinity a node must satisfy.
fn volume_constraints(c: &Cluster, pod: &Value) -> Result<Vec<Arc<Value>>, Placement> {
    let ns = meta::namespace(pod);
    let mut pvs = Vec::new();
    let volumes = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in volumes {
        let Some(claim) = v
            .pointer("/persistentVolumeClaim/claimName")
            .and_then(Value::as_str)
        else {
            continue;
        };
        let Some(pvc) = o::get(c, "", "persistentvolumeclaims", ns, claim) else {
            return Err(Placement::Unschedulable(format!(
                "persistentvolumeclaim \"{claim}\" not found"
            )));
        };
        if meta::is_deleting(&pvc) {
            return Err(Placement::Unschedulable(format!(
                "persistentvolumeclaim \"{claim}\" is being deleted"
            )));
        }
        let volume = o::str_at(&pvc, "/spec/volumeName");
        if o::str_at(&pvc, "/status/phase") == "Bound" && !volume.is_empty() {
            if let Some(pv) = o::get(c, "", "persistentvolumes", "", volume) {
                pvs.push(pv);
            }
            continue;
        }
        // Unbound: a WaitForFirstConsumer claim waits for this very decision; others must bind first.
        let class = super::volumes::class_of(c, &pvc);
        let delayed = class
            .as_ref()
            .is_some_and(|sc| o::str_at(sc, "/volumeBindingMode") == "WaitForFirstConsumer");
        if !delayed {
            return Err(Placement::Unschedulable(
                "pod has unbound immediate PersistentVolumeClaims".into(),
            ));
        }
        // Another pod's scheduling already chose this claim's node: the real scheduler's PreBind
        // waits for that binding and then checks the new PV's node affinity, so a second consumer
        // never lands in another zone. Wait, without marking the pod unschedulable.
        if !o::str_at(
            &pvc,
            "/metadata/annotations/volume.kubernetes.io~1selected-node",
        )
        .is_empty()
        {
            return Err(Placement::Wait);
        }
    }
    Ok(pvs)
}

/// Why a pod's claims keep it from being placed now.
enum Placement {
    /// Marked `PodScheduled=False` with this message.
    Unschedulable(String),
    /// Left as it is for a later pass: a claim it shares is being provisioned.
    Wait,
}

pub fn pass(c: &Arc<Cluster>) -> bool {
    let pods = o::list(c, "", "pods");
    let nodes = o::list(c, "", "nodes");
    let mut used: HashMap<String, (i64, i64, usize)> = HashMap::new();
    for p in &pods {
        let node = o::str_at(p, "/spec/nodeName");
        if !node.is_empty() && !matches!(o::phase(p), "Succeeded" | "Failed") {
            let (cpu, mem) = requests(p);
            let e = used.entry(node.to_string()).or_default();
            e.0 += cpu;
            e.1 += mem;
            e.2 += 1;
        }
    }
    let mut pending: Vec<&Arc<Value>> = pods
        .iter()
        .filter(|p| {
            o::str_at(p, "/spec/nodeName").is_empty()
                && !meta::is_deleting(p)
                && o::phase(p) == "Pending"
                && matches!(
                    o::str_at(p, "/spec/schedulerName"),
                    "" | "default-scheduler"
                )
        })
        .collect();
    pending.sort_by_key(|p| o::str_at(p, "/metadata/creationTimestamp").to_string());
    let mut changed = false;
    for pod in pending {
        match choose(c, pod, &nodes, &used) {
            Ok(None) => {}
            Ok(Some(node)) => {
                let (cpu, mem) = requests(pod);
                let e = used.entry(node.clone()).or_default();
                e.0 += cpu;
                e.1 += mem;
                e.2 += 1;
                changed |= bind(c, pod, &node);
            }
            Err(message) => changed |= unschedulable(c, pod, &message),
        }
    }
    changed
}

fn choose(
    c: &Cluster,
    pod: &Value,
    nodes: &[Arc<Value>],
    used: &HashMap<String, (i64, i64, usize)>,
) -> Result<Option<String>, String> {
    let total = nodes.len();
    let pvs = match volume_constraints(c, pod) {
        Ok(pvs) => pvs,
        Err(Placement::Wait) => return Ok(None),
        Err(Placement::Unschedulable(m)) => {
            return Err(format!(
                "0/{total} nodes are available: {m}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
            ));
        }
    };
    let (cpu, mem) = requests(pod);
    let mut misfits: Vec<Misfit> = Vec::new();
    let mut fits: Vec<(&Arc<Value>, f64)> = Vec::new();
    for n in nodes {
        let name = meta::name(n);
        let verdict = placement_fits(pod, n)
            .and_then(|()| {
                let affinity_ok = pvs.iter().all(|pv| {
                    pv.pointer("/spec/nodeAffinity/required")
                        .is_none_or(|sel| node_selector_matches(n, sel))
                });
                if affinity_ok {
                    Ok(())
                } else {
                    Err(Misfit::VolumeAffinity)
                }
            })
            .and_then(|()| {
                let (acpu, amem) = allocatable(n);
                let (ucpu, umem, _) = used.get(name).copied().unwrap_or_default();
                let mut short = Vec::new();
                if cpu > 0 && ucpu + cpu > acpu {
                    short.push("cpu");
                }
                if mem > 0 && umem + mem > amem {
                    short.push("memory");
                }
                if short.is_empty() {
                    Ok(())
                } else {
                    Err(Misfit::Resources(short))
                }
            });
        match verdict {
            Ok(()) => {
                let (acpu, _) = allocatable(n);
                let (ucpu, _, count) = used.get(name).copied().unwrap_or_default();
                // Least allocated first, then fewest pods: spreads replicas like the real scorer.
                let load = if acpu > 0 {
                    ucpu as f64 / acpu as f64
                } else {
                    1.0
                };
                fits.push((n, load * 1000.0 + count as f64));
            }
            Err(m) => misfits.push(m),
        }
    }
    if let Some((node, _)) = fits.into_iter().min_by(|a, b| {
        a.1.total_cmp(&b.1)
            .then_with(|| meta::name(a.0).cmp(meta::name(b.0)))
    }) {
        return Ok(Some(meta::name(node).to_string()));
    }
    Err(message(total, &misfits))
}

/// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node
/// affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims found for
/// incoming pod, 2 Preemption is not helpful for scheduling.`
pub fn message(total: usize, misfits: &[Misfit]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in misfits {
        for r in m.reasons() {
            *counts.entry(r).or_default() += 1;
        }
    }
    let reasons: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    let helpful = misfits.iter().filter(|m| m.preemption_may_help()).count();
    let mut preemption = Vec::new();
    if helpful > 0 {
        preemption.push(format!(
            "{helpful} No preemption victims found for incoming pod"
        ));
    }
    if total - helpful > 0 {
        preemption.push(format!(
            "{} Preemption is not helpful for scheduling",
            total - helpful
        ));
    }
    if total == 0 {
        return "no nodes available to schedule pods".into();
    }
    format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {}.",
        reasons.join(", "),
        preemption.join(", ")
    )
}

fn bind(c: &Cluster, pod: &Value, node: &str) -> bool {
    // WaitForFirstConsumer claims learn their node now, as the volume binder annotates them.
    let ns = meta::namespace(pod);
    if let Some(vols) = pod.pointer("/spec/volumes").and_then(Value::as_array) {
        for v in vols {
            let Some(claim) = v
                .pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
            else {
                continue;
            };
            if let Some(pvc) = o::get(c, "", "persistentvolumeclaims", ns, claim)
                && o::str_at(&pvc, "/status/phase") != "Bound"
                && o::str_at(
                    &pvc,
                    "/metadata/annotations/volume.kubernetes.io~1selected-node",
                )
                .is_empty()
            {
                let n = node.to_string();
                if let Err(e) = o::update(c, MANAGER, "", "persistentvolumeclaims", &pvc, |x| {
                    x["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] = json!(n);
                }) {
                    o::warn("scheduler", &pvc, &e);
                }
            }
        }
    }
    let n = node.to_string();
    if let Err(e) = o::update(c, MANAGER, "", "pods", pod, |x| {
        x["spec"]["nodeName"] = json!(n);
    }) {
        o::warn("scheduler", pod, &e);
        return false;
    }
    if let Some(p) = o::get(c, "", "pods", ns, meta::name(pod))
        && let Err(e) = o::update_status(c, MANAGER, "", "pods", &p, |x| {
            o::set_condition(x, "PodScheduled", "True", "", "");
            strip_empty_condition_fields(x, "PodScheduled");
        })
    {
        o::warn("scheduler", pod, &e);
    }
    true
}

/// The real PodScheduled=True condition carries no reason or message.
fn strip_empty_condition_fields(pod: &mut Value, ty: &str) {
    if let Some(cs) = pod
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    {
        for c in cs
            .iter_mut()
            .filter(|c| c.get("type").and_then(Value::as_str) == Some(ty))
        {
            if let Some(m) = c.as_object_mut() {
                m.retain(|k, v| !(matches!(k.as_str(), "reason" | "message") && v == ""));
                m.entry("lastProbeTime").or_insert(Value::Null);
            }
        }
    }
}

fn unschedulable(c: &Cluster, pod: &Value, message: &str) -> bool {
    let current = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
        });
    if current.is_some_and(|c| {
        c.get("status").and_then(Value::as_str) == Some("False")
            && c.get("message").and_then(Value::as_str) == Some(message)
    }) {
        return false;
    }
    let m = message.to_string();
    match o::update_status(c, MANAGER, "", "pods", pod, |x| {
        o::set_condition(x, "PodScheduled", "False", "Unschedulable", &m);
        strip_empty_condition_fields(x, "PodScheduled");
    }) {
        Ok(_) => true,
        Err(e) => {
            o::warn("scheduler", pod, &e);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
               "status": {"allocatable": {"cpu": "2", "memory": "4Gi"}}})
    }

    #[test]
    fn affinity_operators_and_taints() {
        let n = node(
            "a",
            json!({"zone": "z1", "gen": "5"}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        );
        let pod = |aff: Value, tol: Value| json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": aff}]}}}, "tolerations": tol}});
        let tol = json!([{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]);
        assert_eq!(
            placement_fits(
                &pod(
                    json!([{"key": "zone", "operator": "In", "values": ["z1"]}]),
                    tol.clone()
                ),
                &n
            ),
            Ok(())
        );
        assert_eq!(
            placement_fits(
                &pod(
                    json!([{"key": "zone", "operator": "NotIn", "values": ["z1"]}]),
                    tol.clone()
                ),
                &n
            ),
            Err(Misfit::Affinity)
        );
        assert_eq!(
            placement_fits(
                &pod(
                    json!([{"key": "gen", "operator": "Gt", "values": ["4"]}]),
                    tol.clone()
                ),
                &n
            ),
            Ok(())
        );
        assert_eq!(
            placement_fits(
                &pod(
                    json!([{"key": "gen", "operator": "Lt", "values": ["4"]}]),
                    tol.clone()
                ),
                &n
            ),
            Err(Misfit::Affinity)
        );
        assert_eq!(
            placement_fits(
                &pod(
                    json!([{"key": "gpu", "operator": "DoesNotExist"}]),
                    tol.clone()
                ),
                &n
            ),
            Ok(())
        );
        assert_eq!(
            placement_fits(&pod(json!([{"key": "gpu", "operator": "Exists"}]), tol), &n),
            Err(Misfit::Affinity)
        );
        assert_eq!(
            placement_fits(
                &pod(json!([{"key": "zone", "operator": "Exists"}]), json!([])),
                &n
            ),
            Err(Misfit::Taint("dedicated: db".into()))
        );
    }

    #[test]
    fn message_counts_reasons_in_order_like_the_scheduler() {
        let m = message(
            3,
            &[
                Misfit::Affinity,
                Misfit::Resources(vec!["cpu"]),
                Misfit::Affinity,
            ],
        );
        assert_eq!(
            m,
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn requests_fall_back_to_limits() {
        let pod = json!({"spec": {"containers": [
            {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
            {"resources": {"limits": {"cpu": "1", "memory": "512Mi"}}}
        ]}});
        assert_eq!(requests(&pod), (1500, 1536 << 20));
    }
}
