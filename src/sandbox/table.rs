//! Server-side Tables (`as=Table`): CRD printer columns (with the JSONPath subset the apiserver's
//! table convertor supports) and the column sets of the kube-apiserver's built-in printers.

use serde_json::{Value, json};

use super::meta;
use super::registry::{PrinterColumn, ResourceInfo};

/// Renders the cells of one row.
type RowFn = Box<dyn Fn(&Value) -> Vec<Value> + Send + Sync>;

/// `includeObject=` of a Table request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: &str) -> Self {
        match s {
            "None" => Self::None,
            "Object" => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// Port of k8s.io/apimachinery/pkg/util/duration.HumanDuration.
pub fn human_duration(seconds_total: i64) -> String {
    let seconds = seconds_total;
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{}h", hours / 24, h);
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{}d", hours / 24 / 365, dy);
    }
    format!("{}y", hours / 24 / 365)
}

/// The age of an RFC 3339 timestamp, as HumanDuration prints it (`<invalid>` if unparsable).
pub fn age(ts: Option<&Value>) -> String {
    let Some(s) = ts.and_then(Value::as_str) else {
        return "<unknown>".into();
    };
    match s.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<invalid>".into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter(String, String),
}

fn parse_jsonpath(path: &str) -> Option<Vec<Step>> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut steps = Vec::new();
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let f: String = chars[start..i].iter().collect();
                if !f.is_empty() {
                    steps.push(Step::Field(f));
                }
            }
            '[' => {
                let end = chars[i..].iter().position(|c| *c == ']').map(|e| e + i)?;
                let inner: String = chars[i + 1..end].iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|x| x.strip_suffix(')')) {
                    let (l, r) = f.split_once("==")?;
                    let field = l.trim().strip_prefix("@.")?.to_string();
                    let val = r.trim().trim_matches('"').trim_matches('\'').to_string();
                    steps.push(Step::Filter(field, val));
                } else if let Ok(n) = inner.parse::<i64>() {
                    steps.push(Step::Index(n));
                } else {
                    steps.push(Step::Field(
                        inner.trim_matches('\'').trim_matches('"').to_string(),
                    ));
                }
                i = end + 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                steps.push(Step::Field(chars[start..i].iter().collect()));
            }
        }
    }
    Some(steps)
}

/// Evaluate the JSONPath subset: `.a.b`, `[n]`, `[*]`, `[?(@.type=="Ready")]`.
pub fn jsonpath<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse_jsonpath(path) else {
        return vec![];
    };
    let mut cur: Vec<&Value> = vec![obj];
    for s in steps {
        let mut next = Vec::new();
        for v in cur {
            match &s {
                Step::Field(f) => {
                    if let Some(c) = v.get(f) {
                        next.push(c);
                    }
                }
                Step::Index(n) => {
                    if let Some(a) = v.as_array() {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        if let Some(c) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                            next.push(c);
                        }
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(f, want) => {
                    if let Some(a) = v.as_array() {
                        for e in a {
                            let got = e.get(f).map(|x| match x {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            });
                            if got.as_deref() == Some(want.as_str()) {
                                next.push(e);
                            }
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

fn col(name: &str, ty: &str, priority: i64) -> Value {
    let description = if name == "Name" {
        "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
    } else {
        ""
    };
    json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" }, "description": description, "priority": priority})
}

fn s(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn or_none(x: String) -> Value {
    if x.is_empty() {
        json!("<none>")
    } else {
        json!(x)
    }
}

fn len_of(v: Option<&Value>) -> usize {
    match v {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn containers_images(obj: &Value, spec_ptr: &str) -> (String, String) {
    let cs = obj
        .pointer(&format!("{spec_ptr}/containers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<String> = cs.iter().map(|c| s(c.get("name"))).collect();
    let images: Vec<String> = cs.iter().map(|c| s(c.get("image"))).collect();
    (names.join(","), images.join(","))
}

fn selector_string(v: Option<&Value>) -> String {
    match v {
        Some(sel) => {
            let ls = super::selectors::LabelSelector::from_object(sel);
            ls.to_string_form()
        }
        None => String::new(),
    }
}

fn i(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

/// Column definitions and a row function for a built-in kind.
fn builtin(res: &ResourceInfo) -> (Vec<Value>, RowFn) {
    let created = |o: &Value| json!(age(o.pointer("/metadata/creationTimestamp")));
    let name = |o: &Value| json!(meta::name(o));
    let g = res.group.as_str();
    let p = res.plural.as_str();
    match (g, p) {
        ("", "namespaces") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| vec![name(o), json!(s(o.pointer("/status/phase"))), created(o)]),
        ),
        ("", "configmaps") => (
            vec![
                col("Name", "string", 0),
                col("Data", "integer", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                vec![
                    name(o),
                    json!(len_of(o.get("data")) + len_of(o.get("binaryData"))),
                    created(o),
                ]
            }),
        ),
        ("", "secrets") => (
            vec![
                col("Name", "string", 0),
                col("Type", "string", 0),
                col("Data", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                vec![
                    name(o),
                    json!(s(o.get("type"))),
                    json!(len_of(o.get("data"))),
                    created(o),
                ]
            }),
        ),
        ("", "serviceaccounts") => (
            vec![
                col("Name", "string", 0),
                col("Secrets", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| vec![name(o), json!(len_of(o.get("secrets"))), created(o)]),
        ),
        ("", "pods") => (
            vec![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Status", "string", 0),
                col("Restarts", "string", 0),
                col("Age", "string", 0),
                col("IP", "string", 1),
                col("Node", "string", 1),
                col("Nominated Node", "string", 1),
                col("Readiness Gates", "string", 1),
            ],
            Box::new(move |o| {
                let total = len_of(o.pointer("/spec/containers"));
                let statuses = o
                    .pointer("/status/containerStatuses")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let ready = statuses
                    .iter()
                    .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                    .count();
                let restarts: i64 = statuses.iter().map(|c| i(c.get("restartCount"))).sum();
                let mut status = s(o.pointer("/status/phase"));
                if let Some(r) = o.pointer("/status/reason").and_then(Value::as_str) {
                    status = r.to_string();
                }
                for c in &statuses {
                    if let Some(w) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
                        status = w.to_string();
                    }
                }
                if meta::is_deleting(o) {
                    status = "Terminating".into();
                }
                vec![
                    name(o),
                    json!(format!("{ready}/{total}")),
                    json!(status),
                    json!(restarts.to_string()),
                    created(o),
                    or_none(s(o.pointer("/status/podIP"))),
                    or_none(s(o.pointer("/spec/nodeName"))),
                    json!("<none>"),
                    json!("<none>"),
                ]
            }),
        ),
        ("", "services") => (
            vec![
                col("Name", "string", 0),
                col("Type", "string", 0),
                col("Cluster-IP", "string", 0),
                col("External-IP", "string", 0),
                col("Port(s)", "string", 0),
                col("Age", "string", 0),
                col("Selector", "string", 1),
            ],
            Box::new(move |o| {
                let ports: Vec<String> = o
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map(|ps| {
                        ps.iter()
                            .map(|p| match p.get("nodePort") {
                                Some(np) => {
                                    format!("{}:{}/{}", i(p.get("port")), np, s(p.get("protocol")))
                                }
                                None => format!("{}/{}", i(p.get("port")), s(p.get("protocol"))),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let ext: Vec<String> = o
                    .pointer("/status/loadBalancer/ingress")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|x| s(x.get("ip").or(x.get("hostname"))))
                            .collect()
                    })
                    .unwrap_or_default();
                let ty = s(o.pointer("/spec/type"));
                let external = if !ext.is_empty() {
                    ext.join(",")
                } else if ty == "LoadBalancer" {
                    "<pending>".into()
                } else {
                    "<none>".into()
                };
                let sel: Vec<String> = o
                    .pointer("/spec/selector")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", s(Some(v))))
                            .collect()
                    })
                    .unwrap_or_default();
                vec![
                    name(o),
                    json!(ty),
                    or_none(s(o.pointer("/spec/clusterIP"))),
                    json!(external),
                    or_none(ports.join(",")),
                    created(o),
                    or_none(sel.join(",")),
                ]
            }),
        ),
        ("", "nodes") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Roles", "string", 0),
                col("Age", "string", 0),
                col("Version", "string", 0),
                col("Internal-IP", "string", 1),
                col("External-IP", "string", 1),
                col("OS-Image", "string", 1),
                col("Kernel-Version", "string", 1),
                col("Container-Runtime", "string", 1),
            ],
            Box::new(move |o| {
                let ready = o
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|cs| {
                        cs.iter()
                            .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
                    })
                    .and_then(|c| c.get("status").and_then(Value::as_str))
                    == Some("True");
                let mut status = if ready {
                    "Ready".to_string()
                } else {
                    "NotReady".to_string()
                };
                if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                    status.push_str(",SchedulingDisabled");
                }
                let roles: Vec<String> = o
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .map(|l| {
                        l.keys()
                            .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                let addr = |t: &str| {
                    o.pointer("/status/addresses")
                        .and_then(Value::as_array)
                        .and_then(|a| {
                            a.iter()
                                .find(|x| x.get("type").and_then(Value::as_str) == Some(t))
                        })
                        .map(|x| s(x.get("address")))
                        .unwrap_or_default()
                };
                vec![
                    name(o),
                    json!(status),
                    or_none(roles.join(",")),
                    created(o),
                    json!(s(o.pointer("/status/nodeInfo/kubeletVersion"))),
                    or_none(addr("InternalIP")),
                    or_none(addr("ExternalIP")),
                    or_none(s(o.pointer("/status/nodeInfo/osImage"))),
                    or_none(s(o.pointer("/status/nodeInfo/kernelVersion"))),
                    or_none(s(o.pointer("/status/nodeInfo/containerRuntimeVersion"))),
                ]
            }),
        ),
        ("", "events") | ("events.k8s.io", "events") => (
            vec![
                col("Last Seen", "string", 0),
                col("Type", "string", 0),
                col("Reason", "string", 0),
                col("Object", "string", 0),
                col("Subobject", "string", 1),
                col("Source", "string", 1),
                col("Message", "string", 0),
                col("First Seen", "string", 1),
                col("Count", "string", 1),
                col("Name", "string", 1),
            ],
            Box::new(move |o| {
                let inv = o
                    .get("involvedObject")
                    .or(o.get("regarding"))
                    .cloned()
                    .unwrap_or(json!({}));
                let last = o
                    .get("lastTimestamp")
                    .filter(|v| !v.is_null())
                    .or(o.get("eventTime"))
                    .or(o.pointer("/metadata/creationTimestamp"));
                let first = o
                    .get("firstTimestamp")
                    .filter(|v| !v.is_null())
                    .or(o.get("eventTime"))
                    .or(o.pointer("/metadata/creationTimestamp"));
                vec![
                    json!(age(last)),
                    json!(s(o.get("type"))),
                    json!(s(o.get("reason"))),
                    json!(format!(
                        "{}/{}",
                        s(inv.get("kind")).to_lowercase(),
                        s(inv.get("name"))
                    )),
                    json!(s(inv.get("fieldPath"))),
                    json!(s(o
                        .pointer("/source/component")
                        .or(o.get("reportingController")))),
                    json!(s(o.get("message").or(o.get("note")))),
                    json!(age(first)),
                    json!(
                        o.get("count")
                            .and_then(Value::as_i64)
                            .unwrap_or(1)
                            .to_string()
                    ),
                    name(o),
                ]
            }),
        ),
        ("", "persistentvolumeclaims") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Volume", "string", 0),
                col("Capacity", "string", 0),
                col("Access Modes", "string", 0),
                col("StorageClass", "string", 0),
                col("VolumeAttributesClass", "string", 0),
                col("Age", "string", 0),
                col("VolumeMode", "string", 1),
            ],
            Box::new(move |o| {
                let modes = access_modes(o.pointer("/status/accessModes"));
                vec![
                    name(o),
                    json!(s(o.pointer("/status/phase"))),
                    json!(s(o.pointer("/spec/volumeName"))),
                    json!(s(o.pointer("/status/capacity/storage"))),
                    json!(modes),
                    json!(s(o.pointer("/spec/storageClassName"))),
                    or_unset(s(o.pointer("/spec/volumeAttributesClassName"))),
                    created(o),
                    json!(s(o.pointer("/spec/volumeMode"))),
                ]
            }),
        ),
        ("", "persistentvolumes") => (
            vec![
                col("Name", "string", 0),
                col("Capacity", "string", 0),
                col("Access Modes", "string", 0),
                col("Reclaim Policy", "string", 0),
                col("Status", "string", 0),
                col("Claim", "string", 0),
                col("StorageClass", "string", 0),
                col("VolumeAttributesClass", "string", 0),
                col("Reason", "string", 0),
                col("Age", "string", 0),
                col("VolumeMode", "string", 1),
            ],
            Box::new(move |o| {
                let claim = match o.pointer("/spec/claimRef") {
                    Some(c) => format!("{}/{}", s(c.get("namespace")), s(c.get("name"))),
                    None => String::new(),
                };
                vec![
                    name(o),
                    json!(s(o.pointer("/spec/capacity/storage"))),
                    json!(access_modes(o.pointer("/spec/accessModes"))),
                    json!(s(o.pointer("/spec/persistentVolumeReclaimPolicy"))),
                    json!(s(o.pointer("/status/phase"))),
                    json!(claim),
                    json!(s(o.pointer("/spec/storageClassName"))),
                    or_unset(s(o.pointer("/spec/volumeAttributesClassName"))),
                    json!(s(o.pointer("/status/reason"))),
                    created(o),
                    json!(s(o.pointer("/spec/volumeMode"))),
                ]
            }),
        ),
        ("storage.k8s.io", "storageclasses") => (
            vec![
                col("Name", "string", 0),
                col("Provisioner", "string", 0),
                col("ReclaimPolicy", "string", 0),
                col("VolumeBindingMode", "string", 0),
                col("AllowVolumeExpansion", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                let default = o
                    .pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                    .and_then(Value::as_str)
                    == Some("true");
                let n = if default {
                    format!("{} (default)", meta::name(o))
                } else {
                    meta::name(o).to_string()
                };
                vec![
                    json!(n),
                    json!(s(o.get("provisioner"))),
                    json!(
                        o.get("reclaimPolicy")
                            .and_then(Value::as_str)
                            .unwrap_or("Delete")
                    ),
                    json!(
                        o.get("volumeBindingMode")
                            .and_then(Value::as_str)
                            .unwrap_or("Immediate")
                    ),
                    json!(
                        o.get("allowVolumeExpansion")
                            .and_then(Value::as_bool)
                            .unwrap_or(false)
                            .to_string()
                    ),
                    created(o),
                ]
            }),
        ),
        ("apps", "deployments") => (
            vec![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Up-to-date", "string", 0),
                col("Available", "string", 0),
                col("Age", "string", 0),
                col("Containers", "string", 1),
                col("Images", "string", 1),
                col("Selector", "string", 1),
            ],
            Box::new(move |o| {
                let (c, im) = containers_images(o, "/spec/template/spec");
                vec![
                    name(o),
                    json!(format!(
                        "{}/{}",
                        i(o.pointer("/status/readyReplicas")),
                        i(o.pointer("/spec/replicas"))
                    )),
                    json!(i(o.pointer("/status/updatedReplicas"))),
                    json!(i(o.pointer("/status/availableReplicas"))),
                    created(o),
                    json!(c),
                    json!(im),
                    json!(selector_string(o.pointer("/spec/selector"))),
                ]
            }),
        ),
        ("apps", "replicasets") => (
            vec![
                col("Name", "string", 0),
                col("Desired", "integer", 0),
                col("Current", "integer", 0),
                col("Ready", "integer", 0),
                col("Age", "string", 0),
                col("Containers", "string", 1),
                col("Images", "string", 1),
                col("Selector", "string", 1),
            ],
            Box::new(move |o| {
                let (c, im) = containers_images(o, "/spec/template/spec");
                vec![
                    name(o),
                    json!(i(o.pointer("/spec/replicas"))),
                    json!(i(o.pointer("/status/replicas"))),
                    json!(i(o.pointer("/status/readyReplicas"))),
                    created(o),
                    json!(c),
                    json!(im),
                    json!(selector_string(o.pointer("/spec/selector"))),
                ]
            }),
        ),
        ("apps", "statefulsets") => (
            vec![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Age", "string", 0),
                col("Containers", "string", 1),
                col("Images", "string", 1),
            ],
            Box::new(move |o| {
                let (c, im) = containers_images(o, "/spec/template/spec");
                vec![
                    name(o),
                    json!(format!(
                        "{}/{}",
                        i(o.pointer("/status/readyReplicas")),
                        i(o.pointer("/spec/replicas"))
                    )),
                    created(o),
                    json!(c),
                    json!(im),
                ]
            }),
        ),
        ("apps", "daemonsets") => (
            vec![
                col("Name", "string", 0),
                col("Desired", "integer", 0),
                col("Current", "integer", 0),
                col("Ready", "integer", 0),
                col("Up-to-date", "integer", 0),
                col("Available", "integer", 0),
                col("Node Selector", "string", 0),
                col("Age", "string", 0),
                col("Containers", "string", 1),
                col("Images", "string", 1),
                col("Selector", "string", 1),
            ],
            Box::new(move |o| {
                let (c, im) = containers_images(o, "/spec/template/spec");
                let ns: Vec<String> = o
                    .pointer("/spec/template/spec/nodeSelector")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", s(Some(v))))
                            .collect()
                    })
                    .unwrap_or_default();
                vec![
                    name(o),
                    json!(i(o.pointer("/status/desiredNumberScheduled"))),
                    json!(i(o.pointer("/status/currentNumberScheduled"))),
                    json!(i(o.pointer("/status/numberReady"))),
                    json!(i(o.pointer("/status/updatedNumberScheduled"))),
                    json!(i(o.pointer("/status/numberAvailable"))),
                    or_none(ns.join(",")),
                    created(o),
                    json!(c),
                    json!(im),
                    json!(selector_string(o.pointer("/spec/selector"))),
                ]
            }),
        ),
        ("batch", "jobs") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Completions", "string", 0),
                col("Duration", "string", 0),
                col("Age", "string", 0),
                col("Containers", "string", 1),
                col("Images", "string", 1),
                col("Selector", "string", 1),
            ],
            Box::new(move |o| {
                let (c, im) = containers_images(o, "/spec/template/spec");
                let conds = o
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let has = |t: &str| {
                    conds.iter().any(|c| {
                        c.get("type").and_then(Value::as_str) == Some(t)
                            && c.get("status").and_then(Value::as_str) == Some("True")
                    })
                };
                let status = if has("Complete") {
                    "Complete"
                } else if has("Failed") {
                    "Failed"
                } else if has("Suspended") {
                    "Suspended"
                } else {
                    "Running"
                };
                let completions = o
                    .pointer("/spec/completions")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                vec![
                    name(o),
                    json!(status),
                    json!(format!(
                        "{}/{}",
                        i(o.pointer("/status/succeeded")),
                        completions
                    )),
                    json!(""),
                    created(o),
                    json!(c),
                    json!(im),
                    json!(selector_string(o.pointer("/spec/selector"))),
                ]
            }),
        ),
        ("batch", "cronjobs") => (
            vec![
                col("Name", "string", 0),
                col("Schedule", "string", 0),
                col("Timezone", "string", 0),
                col("Suspend", "boolean", 0),
                col("Active", "integer", 0),
                col("Last Schedule", "string", 0),
                col("Age", "string", 0),
                col("Containers", "string", 1),
                col("Images", "string", 1),
                col("Selector", "string", 1),
            ],
            Box::new(move |o| {
                let (c, im) = containers_images(o, "/spec/jobTemplate/spec/template/spec");
                let last = o
                    .pointer("/status/lastScheduleTime")
                    .map(|v| age(Some(v)))
                    .unwrap_or_else(|| "<none>".into());
                vec![
                    name(o),
                    json!(s(o.pointer("/spec/schedule"))),
                    or_none(s(o.pointer("/spec/timeZone"))),
                    json!(
                        o.pointer("/spec/suspend")
                            .and_then(Value::as_bool)
                            .unwrap_or(false)
                    ),
                    json!(len_of(o.pointer("/status/active"))),
                    json!(last),
                    created(o),
                    json!(c),
                    json!(im),
                    or_none(String::new()),
                ]
            }),
        ),
        ("networking.k8s.io", "ingresses") => (
            vec![
                col("Name", "string", 0),
                col("Class", "string", 0),
                col("Hosts", "string", 0),
                col("Address", "string", 0),
                col("Ports", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                let hosts: Vec<String> = o
                    .pointer("/spec/rules")
                    .and_then(Value::as_array)
                    .map(|r| {
                        r.iter()
                            .filter_map(|x| x.get("host").and_then(Value::as_str))
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                let ports = if o.pointer("/spec/tls").is_some() {
                    "80, 443"
                } else {
                    "80"
                };
                vec![
                    name(o),
                    or_none(s(o.pointer("/spec/ingressClassName"))),
                    json!(if hosts.is_empty() {
                        "*".to_string()
                    } else {
                        hosts.join(",")
                    }),
                    json!(""),
                    json!(ports),
                    created(o),
                ]
            }),
        ),
        ("networking.k8s.io", "networkpolicies") => (
            vec![
                col("Name", "string", 0),
                col("Pod-Selector", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                let sel = selector_string(o.pointer("/spec/podSelector"));
                vec![
                    name(o),
                    json!(if sel.is_empty() { "<none>".into() } else { sel }),
                    created(o),
                ]
            }),
        ),
        ("autoscaling", "horizontalpodautoscalers") => (
            vec![
                col("Name", "string", 0),
                col("Reference", "string", 0),
                col("Targets", "string", 0),
                col("MinPods", "string", 0),
                col("MaxPods", "string", 0),
                col("Replicas", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                vec![
                    name(o),
                    json!(format!(
                        "{}/{}",
                        s(o.pointer("/spec/scaleTargetRef/kind")),
                        s(o.pointer("/spec/scaleTargetRef/name"))
                    )),
                    json!("<unknown>"),
                    json!(
                        o.pointer("/spec/minReplicas")
                            .and_then(Value::as_i64)
                            .unwrap_or(1)
                            .to_string()
                    ),
                    json!(i(o.pointer("/spec/maxReplicas")).to_string()),
                    json!(i(o.pointer("/status/currentReplicas")).to_string()),
                    created(o),
                ]
            }),
        ),
        ("policy", "poddisruptionbudgets") => (
            vec![
                col("Name", "string", 0),
                col("Min Available", "string", 0),
                col("Max Unavailable", "string", 0),
                col("Allowed Disruptions", "integer", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                let na = |p: &str| {
                    o.pointer(p)
                        .map(|v| s(Some(v)))
                        .filter(|x| !x.is_empty())
                        .unwrap_or_else(|| "N/A".into())
                };
                vec![
                    name(o),
                    json!(na("/spec/minAvailable")),
                    json!(na("/spec/maxUnavailable")),
                    json!(i(o.pointer("/status/disruptionsAllowed"))),
                    created(o),
                ]
            }),
        ),
        ("rbac.authorization.k8s.io", "roles") | ("rbac.authorization.k8s.io", "clusterroles") => (
            vec![col("Name", "string", 0), col("Created At", "date", 0)],
            Box::new(move |o| vec![name(o), json!(s(o.pointer("/metadata/creationTimestamp")))]),
        ),
        ("rbac.authorization.k8s.io", "rolebindings")
        | ("rbac.authorization.k8s.io", "clusterrolebindings") => (
            vec![
                col("Name", "string", 0),
                col("Role", "string", 0),
                col("Age", "string", 0),
                col("Users", "string", 1),
                col("Groups", "string", 1),
                col("ServiceAccounts", "string", 1),
            ],
            Box::new(move |o| {
                let subjects = o
                    .get("subjects")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let of = |k: &str| {
                    subjects
                        .iter()
                        .filter(|x| x.get("kind").and_then(Value::as_str) == Some(k))
                        .map(|x| {
                            if k == "ServiceAccount" {
                                format!("{}/{}", s(x.get("namespace")), s(x.get("name")))
                            } else {
                                s(x.get("name"))
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                vec![
                    name(o),
                    json!(format!(
                        "{}/{}",
                        s(o.pointer("/roleRef/kind")),
                        s(o.pointer("/roleRef/name"))
                    )),
                    created(o),
                    json!(of("User")),
                    json!(of("Group")),
                    json!(of("ServiceAccount")),
                ]
            }),
        ),
        ("coordination.k8s.io", "leases") => (
            vec![
                col("Name", "string", 0),
                col("Holder", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                vec![
                    name(o),
                    json!(s(o.pointer("/spec/holderIdentity"))),
                    created(o),
                ]
            }),
        ),
        ("", "endpoints") => (
            vec![
                col("Name", "string", 0),
                col("Endpoints", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                let mut eps = Vec::new();
                for sub in o
                    .get("subsets")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                {
                    let ports: Vec<i64> = sub
                        .get("ports")
                        .and_then(Value::as_array)
                        .map(|p| p.iter().map(|x| i(x.get("port"))).collect())
                        .unwrap_or_default();
                    for a in sub
                        .get("addresses")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                    {
                        for p in &ports {
                            eps.push(format!("{}:{p}", s(a.get("ip"))));
                        }
                    }
                }
                vec![name(o), or_none(eps.join(",")), created(o)]
            }),
        ),
        ("apiextensions.k8s.io", "customresourcedefinitions") => (
            vec![col("Name", "string", 0), col("Created At", "date", 0)],
            Box::new(move |o| vec![name(o), json!(s(o.pointer("/metadata/creationTimestamp")))]),
        ),
        _ => (
            vec![col("Name", "string", 0), col("Age", "string", 0)],
            Box::new(move |o| vec![name(o), created(o)]),
        ),
    }
}

fn or_unset(x: String) -> Value {
    if x.is_empty() {
        json!("<unset>")
    } else {
        json!(x)
    }
}

fn access_modes(v: Option<&Value>) -> String {
    let modes: Vec<&str> = v
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    modes
        .iter()
        .map(|m| match *m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn crd_cell(col: &PrinterColumn, obj: &Value) -> Value {
    let results = jsonpath(obj, &col.json_path);
    let Some(v) = results.first() else {
        return Value::Null;
    };
    match col.type_.as_str() {
        "date" => json!(age(Some(v))),
        "integer" | "number" | "boolean" => (*v).clone(),
        _ => match v {
            Value::String(s) => json!(s),
            Value::Null => Value::Null,
            other => json!(other.to_string()),
        },
    }
}

/// Column definitions and a row renderer for a resource.
pub struct TableRenderer {
    columns: Vec<Value>,
    row: RowFn,
}

impl TableRenderer {
    pub fn new(res: &ResourceInfo) -> Self {
        if let Some(custom) = &res.custom {
            let cols = if custom.printer_columns.is_empty() {
                vec![PrinterColumn {
                    name: "Age".into(),
                    type_: "date".into(),
                    format: String::new(),
                    description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata".into(),
                    priority: 0,
                    json_path: ".metadata.creationTimestamp".into(),
                }]
            } else {
                custom.printer_columns.clone()
            };
            let mut columns = vec![col("Name", "string", 0)];
            for c in &cols {
                columns.push(json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}));
            }
            let row = Box::new(move |o: &Value| {
                let mut cells = vec![json!(meta::name(o))];
                cells.extend(cols.iter().map(|c| crd_cell(c, o)));
                cells
            });
            return TableRenderer { columns, row };
        }
        let (columns, row) = builtin(res);
        TableRenderer { columns, row }
    }

    pub fn columns(&self) -> Vec<Value> {
        self.columns.clone()
    }

    pub fn row(&self, obj: &Value, include: IncludeObject) -> Value {
        let mut r = json!({"cells": (self.row)(obj)});
        match include {
            IncludeObject::None => {}
            IncludeObject::Object => r["object"] = obj.clone(),
            IncludeObject::Metadata => r["object"] = partial_metadata(obj),
        }
        r
    }

    /// A whole Table.
    pub fn table(
        &self,
        objs: &[&Value],
        rv: &str,
        cont: Option<&str>,
        include: IncludeObject,
        with_columns: bool,
    ) -> Value {
        let mut md = json!({"resourceVersion": rv});
        if let Some(c) = cont {
            md["continue"] = json!(c);
        }
        let rows: Vec<Value> = objs.iter().map(|o| self.row(o, include)).collect();
        json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": md,
            "columnDefinitions": if with_columns { Value::Array(self.columns()) } else { Value::Null },
            "rows": rows,
        })
    }
}

/// `PartialObjectMetadata` of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_matches_upstream() {
        assert_eq!(human_duration(-5), "<invalid>");
        assert_eq!(human_duration(-1), "0s");
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(120), "2m");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600), "3h");
        assert_eq!(human_duration(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(human_duration(10 * 3600), "10h");
        assert_eq!(human_duration(48 * 3600), "2d");
        assert_eq!(human_duration(50 * 3600), "2d2h");
        assert_eq!(human_duration(10 * 86400), "10d");
        assert_eq!(human_duration(800 * 86400), "2y70d");
        assert_eq!(human_duration(9 * 365 * 86400), "9y");
    }

    #[test]
    fn jsonpath_subset() {
        let o = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}, "spec": {"l": [1, 2]}});
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![&json!("True")]
        );
        assert_eq!(jsonpath(&o, ".spec.l[1]"), vec![&json!(2)]);
        assert_eq!(jsonpath(&o, ".spec.l[*]").len(), 2);
        assert!(jsonpath(&o, ".spec.missing").is_empty());
    }
}
