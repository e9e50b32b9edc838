//! Kubeconfig files for simulated clusters: plain HTTP on loopback, no credentials.

/// One kubeconfig holding every `(context name, server URL)`, with `current` as current-context.
pub fn render(entries: &[(&str, String)], current: &str) -> String {
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let mut clusters = String::new();
    let mut contexts = String::new();
    let mut users = String::new();
    for (name, url) in entries {
        clusters.push_str(&format!(
            "- name: {}\n  cluster:\n    server: {}\n",
            q(name),
            q(url)
        ));
        contexts.push_str(&format!(
            "- name: {}\n  context:\n    cluster: {}\n    user: {}\n    namespace: default\n",
            q(name),
            q(name),
            q(&format!("{name}-admin"))
        ));
        users.push_str(&format!(
            "- name: {}\n  user: {{}}\n",
            q(&format!("{name}-admin"))
        ));
    }
    format!(
        "apiVersion: v1\nkind: Config\npreferences: {{}}\nclusters:\n{clusters}contexts:\n{contexts}users:\n{users}current-context: {}\n",
        q(current)
    )
}
