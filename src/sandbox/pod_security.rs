//! Pod Security admission, as the API server's built-in plugin enforces it from the namespace label
//! `pod-security.kubernetes.io/enforce` (`privileged`, `baseline`, `restricted`; version `latest`).
//!
//! A documented subset of the checks of the Pod Security Standards
//! (kubernetes.io/docs/concepts/security/pod-security-standards): baseline — host namespaces,
//! privileged containers, capabilities beyond the default set, hostPath volumes; restricted —
//! those plus `allowPrivilegeEscalation`, capabilities (drop ALL, add only NET_BIND_SERVICE),
//! `runAsNonRoot`, `runAsUser=0`, seccomp profile. The refusal reads like the real one:
//! `pods "x" is forbidden: violates PodSecurity "restricted:latest": <check> (<detail>), …`.

use serde_json::Value;

use super::errors::ApiError;

pub const ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// The capabilities baseline allows to add (the container runtimes' defaults).
const BASELINE_CAPS: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn containers(pod: &Value) -> Vec<&Value> {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| pod["spec"][*k].as_array())
        .flatten()
        .collect()
}

fn cname(c: &Value) -> &str {
    c["name"].as_str().unwrap_or_default()
}

/// What follows a noun in the real message: ` "a"` for one, `s "a", "b"` for several (so
/// `container "a"`, `containers "a", "b"`).
fn names(names: &[&str]) -> String {
    format!(
        "{} {}",
        if names.len() > 1 { "s" } else { "" },
        quoted(names)
    )
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The violated checks of `level`, each as `check (detail)`.
pub fn violations(level: &str, pod: &Value) -> Vec<String> {
    if level != "baseline" && level != "restricted" {
        return Vec::new();
    }
    let spec = &pod["spec"];
    let cs = containers(pod);
    let mut out = Vec::new();
    let host: Vec<&str> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|k| spec[*k].as_bool() == Some(true))
        .collect();
    if !host.is_empty() {
        let set: Vec<String> = host.iter().map(|k| format!("{k}=true")).collect();
        out.push(format!("host namespaces ({})", set.join(", ")));
    }
    let privileged: Vec<&str> = cs
        .iter()
        .filter(|c| c["securityContext"]["privileged"].as_bool() == Some(true))
        .map(|c| cname(c))
        .collect();
    if !privileged.is_empty() {
        out.push(format!(
            "privileged (container{} must not set securityContext.privileged=true)",
            names(privileged.as_slice())
        ));
    }
    let allowed: &[&str] = if level == "restricted" {
        &["NET_BIND_SERVICE"]
    } else {
        &BASELINE_CAPS
    };
    let mut cap_details = Vec::new();
    if level == "restricted" {
        let no_drop: Vec<&str> = cs
            .iter()
            .filter(|c| {
                !c["securityContext"]["capabilities"]["drop"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x == "ALL"))
            })
            .map(|c| cname(c))
            .collect();
        if !no_drop.is_empty() {
            cap_details.push(format!(
                "container{} must set securityContext.capabilities.drop=[\"ALL\"]",
                names(no_drop.as_slice())
            ));
        }
    }
    for c in &cs {
        let added: Vec<&str> = c["securityContext"]["capabilities"]["add"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let bad: Vec<&str> = added
            .into_iter()
            .filter(|cap| !allowed.contains(cap))
            .collect();
        if !bad.is_empty() {
            cap_details.push(format!(
                "container {:?} must not include {} in securityContext.capabilities.add",
                cname(c),
                quoted(&bad)
            ));
        }
    }
    if !cap_details.is_empty() {
        let check = if level == "restricted" {
            "unrestricted capabilities"
        } else {
            "non-default capabilities"
        };
        out.push(format!("{check} ({})", cap_details.join("; ")));
    }
    let host_path: Vec<&str> = spec["volumes"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter(|v| v.get("hostPath").is_some())
                .filter_map(|v| v["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    if !host_path.is_empty() {
        out.push(format!(
            "hostPath volumes (volume{})",
            names(host_path.as_slice())
        ));
    }
    if level != "restricted" {
        return out;
    }
    let escalating: Vec<&str> = cs
        .iter()
        .filter(|c| c["securityContext"]["allowPrivilegeEscalation"].as_bool() != Some(false))
        .map(|c| cname(c))
        .collect();
    if !escalating.is_empty() {
        out.push(format!(
            "allowPrivilegeEscalation != false (container{} must set securityContext.allowPrivilegeEscalation=false)",
            names(escalating.as_slice())
        ));
    }
    let pod_non_root = spec["securityContext"]["runAsNonRoot"].as_bool();
    let not_non_root: Vec<&str> = cs
        .iter()
        .filter(|c| {
            let own = c["securityContext"]["runAsNonRoot"].as_bool();
            own.or(pod_non_root) != Some(true)
        })
        .map(|c| cname(c))
        .collect();
    if !not_non_root.is_empty() {
        out.push(format!(
            "runAsNonRoot != true (pod or container{} must set securityContext.runAsNonRoot=true)",
            names(not_non_root.as_slice())
        ));
    }
    let root_user: Vec<&str> = cs
        .iter()
        .filter(|c| c["securityContext"]["runAsUser"].as_i64() == Some(0))
        .map(|c| cname(c))
        .collect();
    if spec["securityContext"]["runAsUser"].as_i64() == Some(0) || !root_user.is_empty() {
        out.push(format!(
            "runAsUser=0 (container{} must not set runAsUser=0)",
            names(root_user.as_slice())
        ));
    }
    let pod_seccomp = spec["securityContext"]["seccompProfile"]["type"].as_str();
    let no_seccomp: Vec<&str> = cs
        .iter()
        .filter(|c| {
            let t = c["securityContext"]["seccompProfile"]["type"]
                .as_str()
                .or(pod_seccomp);
            !matches!(t, Some("RuntimeDefault" | "Localhost"))
        })
        .map(|c| cname(c))
        .collect();
    if !no_seccomp.is_empty() {
        out.push(format!(
            "seccompProfile (pod or container{} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            names(no_seccomp.as_slice())
        ));
    }
    out
}

/// Refuses a pod that violates the level its namespace enforces (403, like the API server).
pub fn admit(namespace: Option<&Value>, pod: &Value) -> Result<(), ApiError> {
    let Some(level) = namespace
        .and_then(|n| n["metadata"]["labels"][ENFORCE].as_str())
        .map(str::to_string)
    else {
        return Ok(());
    };
    let v = violations(&level, pod);
    if v.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "pods {:?} is forbidden: violates PodSecurity \"{level}:latest\": {}",
        pod["metadata"]["name"].as_str().unwrap_or_default(),
        v.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mover() -> Value {
        json!({"metadata": {"name": "t-send-1-1"}, "spec": {"containers": [{"name": "sender",
            "securityContext": {"runAsUser": 0, "runAsNonRoot": false, "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "FOWNER", "DAC_OVERRIDE"]},
                "seccompProfile": {"type": "RuntimeDefault"}}}]}})
    }

    #[test]
    fn the_mover_passes_baseline_and_fails_restricted_with_the_real_wording() {
        let ns = |level: &str| json!({"metadata": {"labels": {ENFORCE: level}}});
        assert!(admit(Some(&ns("baseline")), &mover()).is_ok());
        assert!(admit(Some(&ns("privileged")), &mover()).is_ok());
        assert!(admit(None, &mover()).is_ok());
        let e = admit(Some(&ns("restricted")), &mover()).expect_err("refused");
        let m = e.status()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            m.starts_with(
                "pods \"t-send-1-1\" is forbidden: violates PodSecurity \"restricted:latest\": "
            ),
            "{m}"
        );
        assert!(m.contains("unrestricted capabilities (container \"sender\" must not include \"CHOWN\", \"FOWNER\", \"DAC_OVERRIDE\" in securityContext.capabilities.add)"), "{m}");
        assert!(m.contains("runAsNonRoot != true (pod or container \"sender\" must set securityContext.runAsNonRoot=true)"), "{m}");
        assert!(
            m.contains("runAsUser=0 (container \"sender\" must not set runAsUser=0)"),
            "{m}"
        );
        assert_eq!(e.status()["code"], 403);
    }

    #[test]
    fn baseline_refuses_host_access_and_extra_capabilities() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"hostNetwork": true,
            "containers": [{"name": "c", "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}}}],
            "volumes": [{"name": "logs", "hostPath": {"path": "/var/log"}}]}});
        let v = violations("baseline", &pod);
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(v[0].starts_with("host namespaces (hostNetwork=true)"));
        assert!(
            v.iter()
                .any(|x| x.contains("must not include \"SYS_ADMIN\""))
        );
        assert!(violations("privileged", &pod).is_empty());
    }
}
