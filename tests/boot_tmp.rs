use std::path::PathBuf;
use sovereign::sandbox::cluster::{Cluster, ClusterOptions};
#[tokio::test(flavor = "multi_thread")]
async fn boot() {
    let bins = sovereign::sandbox::controlplane::binaries::locate(Some(std::path::Path::new("/tmp/cpbin")), &mut |m| eprintln!("{m}")).expect("bins");
    let dir = tempfile::tempdir().expect("tmp");
    let sov = PathBuf::from(env!("CARGO_BIN_EXE_sovereign"));
    let t = std::time::Instant::now();
    let (a, b) = tokio::join!(
        Cluster::start(ClusterOptions::new("source", sovereign::sandbox::profiles::by_id("eks-us-east-1", 1).unwrap(), &dir.path().join("source"), &sov), &bins),
        Cluster::start(ClusterOptions::new("target", sovereign::sandbox::profiles::by_id("qc-sovereign", 1).unwrap(), &dir.path().join("target"), &sov), &bins),
    );
    let (a, b) = match (a, b) { (Ok(a), Ok(b)) => (a, b), (a, b) => panic!("{:?} {:?}", a.err().map(|e| e.to_string()), b.err().map(|e| e.to_string())) };
    eprintln!("ready in {:?} {:?} {:?}", t.elapsed(), a.started_in(), b.started_in());
    let out = std::process::Command::new("/tmp/cpbin/kubectl").arg("--kubeconfig").arg({ let p = dir.path().join("kc"); std::fs::write(&p, a.kubeconfig_yaml("source")).unwrap(); p }).args(["get", "nodes,sc,crd", "-o", "wide"]).output().unwrap();
    eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    a.shutdown().await; b.shutdown().await;
    eprintln!("stopped {:?}", t.elapsed());
}
