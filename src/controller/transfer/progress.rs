//! Reading the sender's log: its stdout is JSON progress lines (see `mover::progress`), the last
//! one `verified` with the root hash both sides agreed on; its stderr says why it failed.

use serde::Deserialize;

#[derive(Debug, Default, PartialEq)]
pub struct Seen {
    pub verified: bool,
    pub pass: i64,
    pub bytes_done: i64,
    pub bytes_total: i64,
    pub files_done: i64,
    pub files_total: i64,
    pub wire_bytes: i64,
    pub bytes_per_second: i64,
    pub elapsed_seconds: f64,
    pub root_hash: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    event: String,
    #[serde(default)]
    pass: u64,
    #[serde(default)]
    files_done: u64,
    #[serde(default)]
    files_total: u64,
    #[serde(default)]
    bytes_done: u64,
    #[serde(default)]
    bytes_total: u64,
    #[serde(default)]
    wire_bytes: u64,
    #[serde(default)]
    bytes_per_second: f64,
    #[serde(default)]
    elapsed_seconds: f64,
    #[serde(default)]
    root_hash: Option<String>,
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The last progress line of a log, if any.
pub fn last(log: &str) -> Option<Seen> {
    log.lines().rev().find_map(|l| {
        let line: Line = serde_json::from_str(l.trim()).ok()?;
        Some(Seen {
            verified: line.event == "verified",
            pass: clamp(line.pass),
            bytes_done: clamp(line.bytes_done),
            bytes_total: clamp(line.bytes_total),
            files_done: clamp(line.files_done),
            files_total: clamp(line.files_total),
            wire_bytes: clamp(line.wire_bytes),
            bytes_per_second: line.bytes_per_second.max(0.0) as i64,
            elapsed_seconds: line.elapsed_seconds,
            root_hash: line.root_hash,
        })
    })
}

/// The last error the log reports (a JSON log line at level ERROR, or a plain `error:` line).
pub fn failure(log: &str) -> Option<String> {
    log.lines().rev().find_map(|l| {
        let l = l.trim();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
            if v["level"].as_str() == Some("ERROR") {
                return v["fields"]["message"]
                    .as_str()
                    .or(v["fields"]["error"].as_str())
                    .map(String::from);
            }
            return None;
        }
        let lower = l.to_ascii_lowercase();
        (lower.starts_with("error") || lower.contains("error:"))
            .then(|| l.chars().take(500).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_progress_line_wins_and_other_lines_are_skipped() {
        let log = r#"{"event":"progress","pass":1,"filesDone":1,"filesTotal":4,"bytesDone":10,"bytesTotal":40,"wireBytes":12,"wireBytesIn":0,"bytesPerSecond":5.5,"etaSeconds":6.0,"elapsedSeconds":2.0}
{"timestamp":"x","level":"INFO","fields":{"message":"connected"}}
{"event":"verified","pass":1,"filesDone":4,"filesTotal":4,"bytesDone":40,"bytesTotal":40,"wireBytes":44,"wireBytesIn":3,"bytesPerSecond":20.0,"etaSeconds":null,"elapsedSeconds":2.0,"rootHash":"ab12"}
"#;
        let s = last(log).expect("a line");
        assert!(s.verified);
        assert_eq!((s.bytes_done, s.wire_bytes), (40, 44));
        assert_eq!(s.root_hash.as_deref(), Some("ab12"));
        assert!(last("no json here\n").is_none());
    }

    #[test]
    fn a_failure_is_read_from_the_last_error() {
        let log =
            "{\"level\":\"ERROR\",\"fields\":{\"message\":\"the receiver's root hash differs\"}}\n";
        assert_eq!(
            failure(log).as_deref(),
            Some("the receiver's root hash differs")
        );
        assert_eq!(
            failure("Error: connection refused\n").as_deref(),
            Some("Error: connection refused")
        );
        assert!(failure("all good\n").is_none());
    }
}
