//! When a container that ended starts again: the restart rule of its pod's `restartPolicy`
//! (per role) and the kubelet's crash-loop back-off (10 s doubling to 5 min; the first restart
//! is immediate, as `doBackOff` only holds a container back once a back-off entry exists).

use std::time::{Duration, Instant};

/// What a container is to its pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An ordinary init container: runs to completion before the next one.
    Init,
    /// An init container with `restartPolicy: Always`: started before the next one, then
    /// runs beside the pod's containers.
    Sidecar,
    Main,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Always,
    OnFailure,
    Never,
}

impl Rule {
    /// The rule of a container of this role in a pod with this `restartPolicy`.
    pub fn of(pod_policy: Option<&str>, role: Role) -> Rule {
        let policy = match pod_policy {
            Some("Never") => Rule::Never,
            Some("OnFailure") => Rule::OnFailure,
            _ => Rule::Always,
        };
        match role {
            Role::Main => policy,
            Role::Sidecar => Rule::Always,
            // Init containers are retried until they succeed, unless the pod never restarts.
            Role::Init if policy == Rule::Never => Rule::Never,
            Role::Init => Rule::OnFailure,
        }
    }

    /// Whether an instance that exited with this code is followed by another.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            Rule::Always => true,
            Rule::OnFailure => exit_code != 0,
            Rule::Never => false,
        }
    }
}

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

/// One container's back-off entry (the kubelet's `flowcontrol.Backoff` for one key).
#[derive(Clone, Debug, Default)]
pub struct Backoff {
    current: Option<Duration>,
    last: Option<Instant>,
}

impl Backoff {
    fn expired(&self, finished: Instant) -> bool {
        self.last
            .is_none_or(|l| finished.saturating_duration_since(l) > 2 * MAX)
    }

    /// For an instance that finished at `finished`: how much longer to wait, and the back-off
    /// being served (what the CrashLoopBackOff message names). None: start at once.
    pub fn wait(&self, finished: Instant, now: Instant) -> Option<(Duration, Duration)> {
        let current = self.current?;
        if self.expired(finished) {
            return None;
        }
        let waited = now.saturating_duration_since(finished);
        (waited < current).then(|| (current - waited, current))
    }

    /// Records a restart of an instance that finished at `finished`: the next back-off doubles
    /// (up to 5 minutes), or starts again at 10 s after a long quiet period.
    pub fn next(&mut self, finished: Instant) {
        self.current = Some(match self.current {
            Some(d) if !self.expired(finished) => (d * 2).min(MAX),
            _ => INITIAL,
        });
        self.last = Some(finished);
    }
}

/// A duration as Go's `time.Duration.String` writes whole seconds: `10s`, `1m20s`, `5m0s`.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_follow_the_pod_policy_per_role() {
        assert_eq!(Rule::of(None, Role::Main), Rule::Always);
        assert_eq!(Rule::of(Some("OnFailure"), Role::Main), Rule::OnFailure);
        assert_eq!(Rule::of(Some("Never"), Role::Init), Rule::Never);
        assert_eq!(Rule::of(Some("Always"), Role::Init), Rule::OnFailure);
        assert_eq!(Rule::of(Some("Never"), Role::Sidecar), Rule::Always);
        assert!(Rule::Always.restarts(0));
        assert!(!Rule::OnFailure.restarts(0) && Rule::OnFailure.restarts(2));
        assert!(!Rule::Never.restarts(1));
    }

    #[test]
    fn back_off_is_immediate_once_then_doubles_to_five_minutes() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.wait(t0, t0), None, "the first restart is immediate");
        b.next(t0);
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(b.wait(t1, t1), Some((INITIAL, INITIAL)));
        assert_eq!(
            b.wait(t1, t1 + Duration::from_secs(4)),
            Some((Duration::from_secs(6), INITIAL))
        );
        let mut served = vec![];
        let mut t = t1;
        for _ in 0..7 {
            served.push(
                b.wait(t, t)
                    .map(|(_, d)| go_duration(d))
                    .unwrap_or_default(),
            );
            b.next(t);
            t += Duration::from_secs(1);
        }
        assert_eq!(
            served,
            ["10s", "20s", "40s", "1m20s", "2m40s", "5m0s", "5m0s"]
        );
        // Ten quiet minutes (twice the cap) reset it.
        let later = t + Duration::from_secs(601);
        assert_eq!(b.wait(later, later), None);
        b.next(later);
        assert_eq!(b.wait(later, later).map(|(_, d)| d), Some(INITIAL));
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(3725)), "1h2m5s");
    }
}
