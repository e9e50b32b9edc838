//! Real files in the sample application's volumes, so a migration has data to move: once each
//! claim is bound, text, CSV and JSON files plus one binary blob are written into the directory
//! behind it (`storage::claim_dir`), adding up to the requested total size.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::SandboxError;

/// The claims that get data, with the share of the total each gets.
const CLAIMS: [(&str, u64); 3] = [
    ("data-dossier-db-0", 60),
    ("wal-dossier-db-0", 10),
    ("dossier-documents", 30),
];

/// Parse a size such as `64MiB`, `1GiB`, `500k`, `0` (binary or decimal suffixes, optional `B`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix('B').unwrap_or(t);
    crate::migrate::plan::quantity_bytes(t)
        .ok_or_else(|| format!("{s:?} is not a size (examples: 64MiB, 1GiB, 500k, 0)"))
}

/// Wait for the claims to bind (their pods get scheduled first: WaitForFirstConsumer), then
/// write about `total` bytes across them.
pub async fn write(source: &kube::Client, namespace: &str, total: u64) -> Result<(), SandboxError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for (claim, share) in CLAIMS {
        let dir = loop {
            if let Some(d) = super::storage::claim_dir(source, namespace, claim)
                .await
                .filter(|d| d.is_dir())
            {
                break d;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(SandboxError::Demo(format!(
                    "the claim {namespace}/{claim} did not bind in 120s: no data written"
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let bytes = total * share / 100;
        let seed = claim.bytes().map(u64::from).sum();
        if claim.starts_with("data-") {
            database(&dir, bytes, seed)?;
        } else {
            documents(&dir, bytes, seed)?;
        }
    }
    Ok(())
}

fn create(path: &Path) -> Result<std::io::BufWriter<std::fs::File>, SandboxError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    Ok(std::io::BufWriter::new(std::fs::File::create(path)?))
}

/// Random bytes (incompressible, like encrypted or compressed content).
fn blob(path: &Path, bytes: u64, rng: &mut fastrand::Rng) -> Result<(), SandboxError> {
    let mut f = create(path)?;
    let mut left = bytes;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        rng.fill(&mut buf);
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

const NAMES: [&str; 8] = [
    "Tremblay", "Gagnon", "Roy", "Côté", "Bouchard", "Gauthier", "Morin", "Lavoie",
];
const CITIES: [&str; 6] = [
    "Québec",
    "Montréal",
    "Gatineau",
    "Sherbrooke",
    "Trois-Rivières",
    "Rimouski",
];

/// A PostgreSQL-looking data directory: version file, a CSV export, a JSON-lines audit log and
/// a relation file (the blob).
fn database(dir: &Path, bytes: u64, seed: u64) -> Result<(), SandboxError> {
    let mut rng = fastrand::Rng::with_seed(seed);
    std::fs::write(dir.join("PG_VERSION"), "16\n")?;
    let csv_bytes = bytes * 15 / 100;
    let mut f = create(&dir.join("exports/patients.csv"))?;
    f.write_all(b"id,nom,ville,naissance,ramq\n")?;
    let mut written = 0u64;
    let mut id = 0u64;
    while written < csv_bytes {
        id += 1;
        let line = format!(
            "{id},{},{},{}-{:02}-{:02},{}{:08}\n",
            NAMES[rng.usize(..NAMES.len())],
            CITIES[rng.usize(..CITIES.len())],
            rng.u32(1930..2020),
            rng.u32(1..13),
            rng.u32(1..29),
            NAMES[rng.usize(..NAMES.len())]
                .chars()
                .take(3)
                .collect::<String>()
                .to_uppercase(),
            rng.u32(..100_000_000)
        );
        written += line.len() as u64;
        f.write_all(line.as_bytes())?;
    }
    f.flush()?;
    let json_bytes = bytes * 10 / 100;
    let mut f = create(&dir.join("log/audit.jsonl"))?;
    let mut written = 0u64;
    let mut n = 0u64;
    while written < json_bytes {
        n += 1;
        let action = ["read", "update", "print"][rng.usize(..3)];
        let line = serde_json::json!({"seq": n, "patient": rng.u64(1..=id.max(1)),
            "action": action, "by": format!("clinicien-{}", rng.u32(1..200))})
        .to_string()
            + "\n";
        written += line.len() as u64;
        f.write_all(line.as_bytes())?;
    }
    f.flush()?;
    let rest = bytes.saturating_sub(csv_bytes + json_bytes);
    blob(&dir.join("base/16384/2619"), rest, &mut rng)
}

/// Scanned documents: a README, one JSON record per dossier, a binary archive.
fn documents(dir: &Path, bytes: u64, seed: u64) -> Result<(), SandboxError> {
    let mut rng = fastrand::Rng::with_seed(seed);
    std::fs::write(
        dir.join("README.txt"),
        "Dossiers santé — documents numérisés (données fictives du bac à sable).\n",
    )?;
    let records = 20u64;
    let record_bytes = bytes * 20 / 100 / records;
    for i in 1..=records {
        let notes: String = (0..record_bytes / 8)
            .map(|_| ["note ", "suivi ", "visite ", "bilan "][rng.usize(..4)])
            .collect();
        let doc = serde_json::json!({"dossier": i, "nom": NAMES[rng.usize(..NAMES.len())],
                                     "ville": CITIES[rng.usize(..CITIES.len())], "notes": notes});
        std::fs::create_dir_all(dir.join("dossiers"))?;
        std::fs::write(dir.join(format!("dossiers/{i:04}.json")), doc.to_string())?;
    }
    let rest = bytes.saturating_sub(record_bytes * records);
    blob(&dir.join("scans/archive-2025.bin"), rest, &mut rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_or_without_b() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn the_files_add_up_to_the_requested_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        database(dir.path(), 1 << 20, 1).expect("database");
        let total: u64 = ["exports/patients.csv", "log/audit.jsonl", "base/16384/2619"]
            .iter()
            .map(|f| std::fs::metadata(dir.path().join(f)).expect("file").len())
            .sum();
        assert!(total.abs_diff(1 << 20) < 4096, "{total}");
    }
}
