//! Loopback addresses of one simulated cluster. Linux routes all of 127.0.0.0/8 to `lo`, so
//! every pod, node and load balancer gets a real address a process can bind and connect to.
//!
//! Each cluster owns one second octet `A` (never 0, so never 127.0.0.1):
//! pods `127.A.0.2`–`127.A.199.251`, nodes `127.A.200.2`…, load balancers `127.A.201.2`….
//! The octet is reserved across processes (parallel test binaries) with an exclusive `flock` on
//! `<tmp>/sovereign-sandbox-net/<A>.lock`, held as long as the cluster lives.

use std::collections::HashMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// Octets a cluster may take.
const FIRST: u8 = 16;
const LAST: u8 = 254;

pub struct Block {
    octet: u8,
    _lock: Option<File>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pods: HashMap<String, Ipv4Addr>,
    free_pods: Vec<u32>,
    next_pod: u32,
    nodes: HashMap<String, Ipv4Addr>,
    balancers: HashMap<String, Ipv4Addr>,
}

static TAKEN: Mutex<Vec<u8>> = Mutex::new(Vec::new());

impl Block {
    /// Reserve an octet no other live cluster (in this process or another) holds.
    pub fn reserve() -> Block {
        let dir = std::env::temp_dir().join("sovereign-sandbox-net");
        let _ = std::fs::create_dir_all(&dir);
        let span = u32::from(LAST - FIRST) + 1;
        let start = std::process::id() % span;
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        for i in 0..span {
            let octet = FIRST + ((start + i) % span) as u8;
            if taken.contains(&octet) {
                continue;
            }
            let Ok(file) = File::create(dir.join(format!("{octet}.lock"))) else {
                continue;
            };
            if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_ok()
            {
                taken.push(octet);
                return Block::new(octet, Some(file));
            }
        }
        // Every octet is locked by someone: share one, unique within this process at least.
        let octet = (FIRST..=LAST).find(|o| !taken.contains(o)).unwrap_or(FIRST);
        taken.push(octet);
        tracing::warn!(
            octet,
            "no free loopback block across processes; addresses may collide"
        );
        Block::new(octet, None)
    }

    fn new(octet: u8, lock: Option<File>) -> Block {
        Block {
            octet,
            _lock: lock,
            state: Mutex::new(State::default()),
        }
    }

    pub fn octet(&self) -> u8 {
        self.octet
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pod's address (the same for the pod's whole life).
    pub fn pod_ip(&self, uid: &str) -> Option<Ipv4Addr> {
        let mut st = self.state();
        if let Some(ip) = st.pods.get(uid) {
            return Some(*ip);
        }
        let n = match st.free_pods.pop() {
            Some(n) => n,
            None if st.next_pod < 200 * 250 => {
                st.next_pod += 1;
                st.next_pod - 1
            }
            None => return None,
        };
        let ip = Ipv4Addr::new(127, self.octet, (n / 250) as u8, (n % 250 + 2) as u8);
        st.pods.insert(uid.to_string(), ip);
        Some(ip)
    }

    /// Give the pod's address back (the pod is gone).
    pub fn release_pod(&self, uid: &str) {
        let mut st = self.state();
        if let Some(ip) = st.pods.remove(uid) {
            let [_, _, c, d] = ip.octets();
            st.free_pods.push(u32::from(c) * 250 + u32::from(d) - 2);
        }
    }

    pub fn node_ip(&self, node: &str) -> Ipv4Addr {
        let mut st = self.state();
        let n = st.nodes.len() as u32;
        let octet = self.octet;
        *st.nodes
            .entry(node.to_string())
            .or_insert_with(|| Ipv4Addr::new(127, octet, 200, (n % 250 + 2) as u8))
    }

    /// The ingress address of a LoadBalancer Service (`namespace/name`).
    pub fn balancer_ip(&self, service: &str) -> Ipv4Addr {
        let mut st = self.state();
        let n = st.balancers.len() as u32;
        let octet = self.octet;
        *st.balancers.entry(service.to_string()).or_insert_with(|| {
            Ipv4Addr::new(127, octet, 201 + (n / 250 % 54) as u8, (n % 250 + 2) as u8)
        })
    }

    /// Whether an address belongs to this cluster's block.
    pub fn contains(&self, ip: &str) -> bool {
        ip.parse::<Ipv4Addr>()
            .is_ok_and(|a| a.octets()[0] == 127 && a.octets()[1] == self.octet)
    }

    /// Remember addresses a restarted controller finds already written in objects.
    pub fn adopt_pod(&self, uid: &str, ip: &str) {
        if let Ok(a) = ip.parse::<Ipv4Addr>()
            && self.contains(ip)
        {
            self.state().pods.entry(uid.to_string()).or_insert(a);
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        taken.retain(|o| *o != self.octet);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_blocks_never_share_an_octet_and_pod_addresses_are_unique() {
        let a = Block::reserve();
        let b = Block::reserve();
        assert_ne!(a.octet(), b.octet());
        assert_ne!(a.octet(), 0);
        let p1 = a.pod_ip("u1").expect("address");
        let p2 = a.pod_ip("u2").expect("address");
        assert_ne!(p1, p2);
        assert_eq!(a.pod_ip("u1"), Some(p1));
        assert_ne!(p1, Ipv4Addr::new(127, 0, 0, 1));
        a.release_pod("u1");
        assert_eq!(a.pod_ip("u3"), Some(p1), "a freed address is reused");
        assert!(a.contains(&a.balancer_ip("ns/svc").to_string()));
        assert_ne!(a.balancer_ip("ns/svc"), a.balancer_ip("ns/other"));
    }
}
