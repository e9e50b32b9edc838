//! The loopback addresses of one sandbox cluster. Linux routes all of 127.0.0.0/8 to `lo`, so
//! the control plane, every node, pod and load balancer gets a real address a process can bind
//! and connect to, and two clusters never compete for a port.
//!
//! Each cluster owns one second octet `A` (never 0, so never 127.0.0.1):
//! the control plane `127.A.0.1`, pods `127.A.1.0`–`127.A.199.255`, nodes `127.A.200.2`…,
//! load balancers `127.A.201.2`–`127.A.254.251`. The octet is reserved across processes (parallel
//! test binaries, a second `sovereign sandbox`) with an exclusive `flock` on
//! `<tmp>/sovereign-sandbox-net/<A>.lock`, held as long as the cluster lives. A resumed cluster
//! asks for the octet it had (its objects carry those addresses) and adopts the addresses its
//! pods and Services already hold.

use std::collections::HashMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// Octets a cluster may take.
const FIRST: u8 = 16;
const LAST: u8 = 254;
const POD_FIRST: u32 = 256;
const POD_LAST: u32 = 200 * 256 - 1;
const LB_FIRST: u32 = 201 * 256 + 2;
const LB_LAST: u32 = 254 * 256 + 251;

/// The cluster network the API sees the block as (see the module's documentation).
pub const CLUSTER_NETWORK: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 0);

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error(
        "the loopback block 127.{0}.0.0/16 is held by another sandbox cluster (its lock file is {1})"
    )]
    Taken(u8, String),
    #[error("no free loopback block: every 127.A.0.0/16 from A={FIRST} to {LAST} is held")]
    Exhausted,
}

pub struct Block {
    octet: u8,
    _lock: File,
    state: Mutex<State>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block").field("octet", &self.octet).finish()
    }
}

#[derive(Default)]
struct State {
    /// By owner (pod uid, `namespace/service`): the offset inside the block.
    owners: HashMap<String, u32>,
    used: std::collections::HashSet<u32>,
}

static TAKEN: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn lock_file(octet: u8) -> Option<(File, String)> {
    let dir = std::env::temp_dir().join("sovereign-sandbox-net");
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("{octet}.lock"));
    let file = File::create(&path).ok()?;
    Some((file, path.display().to_string()))
}

impl Block {
    /// Reserves `preferred` (a resumed cluster's octet: an error if someone holds it) or any
    /// octet no other live cluster, in this process or another, holds.
    pub fn reserve(preferred: Option<u8>) -> Result<Block, AddressError> {
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        let try_lock = |octet: u8, taken: &[u8]| -> Option<File> {
            if taken.contains(&octet) {
                return None;
            }
            let (file, _) = lock_file(octet)?;
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .ok()
                .map(|_| file)
        };
        if let Some(octet) = preferred {
            return match try_lock(octet, &taken) {
                Some(file) => {
                    taken.push(octet);
                    Ok(Block::new(octet, file))
                }
                None => Err(AddressError::Taken(
                    octet,
                    lock_file(octet).map(|(_, p)| p).unwrap_or_default(),
                )),
            };
        }
        let span = u32::from(LAST - FIRST) + 1;
        let start = std::process::id() % span;
        for i in 0..span {
            let octet = FIRST + ((start + i) % span) as u8;
            if let Some(file) = try_lock(octet, &taken) {
                taken.push(octet);
                return Ok(Block::new(octet, file));
            }
        }
        Err(AddressError::Exhausted)
    }

    fn new(octet: u8, lock: File) -> Block {
        Block {
            octet,
            _lock: lock,
            state: Mutex::new(State::default()),
        }
    }

    pub fn octet(&self) -> u8 {
        self.octet
    }

    fn addr(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::new(127, self.octet, (offset >> 8) as u8, (offset & 0xff) as u8)
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        let [a, b, c, d] = ip.octets();
        (a == 127 && b == self.octet).then(|| u32::from(c) << 8 | u32::from(d))
    }

    /// The control plane's address: etcd, the API server, the controller manager, the scheduler
    /// and the fault proxies listen here.
    pub fn control_plane(&self) -> Ipv4Addr {
        self.addr(1)
    }

    /// The address of the node at `index` in its profile.
    pub fn node_ip(&self, index: usize) -> Ipv4Addr {
        self.addr(200 * 256 + 2 + (index as u32 % 250))
    }

    fn allocate(&self, owner: &str, first: u32, last: u32) -> Option<Ipv4Addr> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = st.owners.get(owner) {
            return Some(self.addr(*o));
        }
        let free = (first..=last)
            .find(|o| !st.used.contains(o) && (o & 0xff) != 0 && (o & 0xff) != 255)?;
        st.used.insert(free);
        st.owners.insert(owner.to_string(), free);
        Some(self.addr(free))
    }

    fn adopt(&self, owner: &str, ip: &str, first: u32, last: u32) -> bool {
        let Some(o) = ip.parse().ok().and_then(|ip| self.offset(ip)) else {
            return false;
        };
        if !(first..=last).contains(&o) {
            return false;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.owners.contains_key(owner) || st.used.contains(&o) {
            return st.owners.get(owner) == Some(&o);
        }
        st.used.insert(o);
        st.owners.insert(owner.to_string(), o);
        true
    }

    /// Gives the owner's address back.
    pub fn release(&self, owner: &str) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = st.owners.remove(owner) {
            st.used.remove(&o);
        }
    }

    /// The pod's address (the same for the pod's whole life; None when the block is full).
    pub fn pod_ip(&self, uid: &str) -> Option<Ipv4Addr> {
        self.allocate(uid, POD_FIRST, POD_LAST)
    }

    /// Keeps the address a pod already has (a restarted agent); false when it is not ours or
    /// another owner holds it.
    pub fn adopt_pod(&self, uid: &str, ip: &str) -> bool {
        self.adopt(uid, ip, POD_FIRST, POD_LAST)
    }

    /// The ingress address of a LoadBalancer Service (`namespace/name`).
    pub fn balancer_ip(&self, service: &str) -> Option<Ipv4Addr> {
        self.allocate(&format!("lb:{service}"), LB_FIRST, LB_LAST)
    }

    pub fn adopt_balancer(&self, service: &str, ip: &str) -> bool {
        self.adopt(&format!("lb:{service}"), ip, LB_FIRST, LB_LAST)
    }

    pub fn release_balancer(&self, service: &str) {
        self.release(&format!("lb:{service}"));
    }

    /// The cluster-network address the API knows for one of the block's addresses (None for an
    /// address not of this block).
    pub fn cluster_address(&self, loopback: Ipv4Addr) -> Option<Ipv4Addr> {
        let o = self.offset(loopback)?;
        let [a, b, _, _] = CLUSTER_NETWORK.octets();
        Some(Ipv4Addr::new(a, b, (o >> 8) as u8, (o & 0xff) as u8))
    }

    /// Where to connect for an address the API gave: the block's loopback address behind a
    /// cluster-network address; any other address (one of the block's, or outside both, as a
    /// selector-less Service may name) as it is.
    pub fn loopback_address(&self, ip: Ipv4Addr) -> Ipv4Addr {
        let [a, b, c, d] = ip.octets();
        let [na, nb, _, _] = CLUSTER_NETWORK.octets();
        if (a, b) == (na, nb) {
            Ipv4Addr::new(127, self.octet, c, d)
        } else {
            ip
        }
    }

    /// Whether an address belongs to this cluster's block.
    pub fn contains(&self, ip: &str) -> bool {
        ip.parse().ok().and_then(|ip| self.offset(ip)).is_some()
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
    fn blocks_never_share_an_octet_and_addresses_are_unique_and_adoptable() {
        let a = Block::reserve(None).expect("a");
        let b = Block::reserve(None).expect("b");
        assert_ne!(a.octet(), b.octet());
        assert!(Block::reserve(Some(a.octet())).is_err(), "a held octet");
        let p1 = a.pod_ip("u1").expect("address");
        let p2 = a.pod_ip("u2").expect("address");
        assert_ne!(p1, p2);
        assert_eq!(a.pod_ip("u1"), Some(p1));
        assert_ne!(p1, a.control_plane());
        a.release("u1");
        assert!(!a.adopt_pod("u9", &p2.to_string()), "held by u2");
        assert!(a.adopt_pod("u1", &p1.to_string()), "free again, adopted");
        let lb = a.balancer_ip("ns/svc").expect("lb");
        assert!(a.contains(&lb.to_string()));
        assert_ne!(Some(lb), a.balancer_ip("ns/other"));
        assert!(!a.contains(&format!("127.{}.0.9", b.octet())));
    }

    #[test]
    fn cluster_network_addresses_translate_both_ways() {
        let a = Block::reserve(None).expect("a");
        let pod = a.pod_ip("u").expect("address");
        let seen = a.cluster_address(pod).expect("ours");
        assert_eq!(seen.octets()[..2], [10, 244]);
        assert_eq!(seen.octets()[2..], pod.octets()[2..]);
        assert_eq!(a.loopback_address(seen), pod);
        assert_eq!(a.loopback_address(pod), pod, "already a loopback address");
        let outside = Ipv4Addr::new(192, 168, 1, 5);
        assert_eq!(a.loopback_address(outside), outside);
        assert_eq!(a.cluster_address(Ipv4Addr::new(127, 0, 0, 1)), None);
    }
}
