//! Containers' logs as the kubelet keeps and reads them: one CRI-format file per container
//! instance (`<pod dir>/logs/<container>/<restartCount>.log`, lines
//! `<RFC 3339 time> stdout|stderr F|P <text>`), read back for `GET /containerLogs` with the
//! kubelet's options: `tailLines` (counted on the file's lines, before `since`), `sinceTime`/
//! `sinceSeconds`, `timestamps` (each line prefixed with its time in RFC 3339 with nanoseconds,
//! as Go writes it) and `limitBytes` (the output is cut there, prefixes included).

use std::path::{Path, PathBuf};

use jiff::Timestamp;

/// `<pod dir>/logs/<container>`
pub fn container_dir(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join("logs").join(container)
}

/// The log of one instance of a container.
pub fn instance_file(dir: &Path, instance: i32) -> PathBuf {
    dir.join(format!("{instance}.log"))
}

/// One parsed CRI log line.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: Timestamp,
    pub stream: &'a str,
    /// `P`: the line goes on in the next record.
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses one line (without its newline); None for anything else.
pub fn parse(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Record {
        time,
        stream,
        partial,
        content: parts.next().unwrap_or_default(),
    })
}

/// A time as Go's RFC3339Nano writes it: fractional digits without trailing zeros, none at all
/// for a whole second.
pub fn rfc3339_nano(t: Timestamp) -> String {
    let base = t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    match t.subsec_nanosecond() {
        0 => format!("{base}Z"),
        n => format!("{base}.{}Z", format!("{n:09}").trim_end_matches('0')),
    }
}

/// How to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub tail: Option<usize>,
    pub since: Option<Timestamp>,
    pub limit: Option<usize>,
    pub timestamps: bool,
}

/// Where the last `n` finished lines of `content` start (a line still being written is not
/// one yet).
pub fn tail_start(content: &[u8], n: usize) -> usize {
    let end = content
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    if n == 0 {
        return end;
    }
    let body = &content[..end.saturating_sub(1)];
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

/// Turns CRI lines into what `kubectl logs` shows, across calls (following a growing file).
#[derive(Debug)]
pub struct Reader {
    opts: Options,
    written: usize,
    /// The previous record was partial: the next one continues its line (no prefix).
    continuing: bool,
}

impl Reader {
    pub fn new(opts: Options) -> Reader {
        Reader {
            opts,
            written: 0,
            continuing: false,
        }
    }

    /// limitBytes reached: nothing more is written.
    pub fn full(&self) -> bool {
        self.opts.limit.is_some_and(|l| self.written >= l)
    }

    /// Renders the complete lines of `bytes`; returns the output and how many bytes were used
    /// (an unfinished last line is left for the next call).
    pub fn feed(&mut self, bytes: &[u8]) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut used = 0;
        while let Some(end) = bytes[used..].iter().position(|b| *b == b'\n') {
            let line = &bytes[used..used + end];
            used += end + 1;
            if self.full() {
                continue;
            }
            if let Some(r) = parse(line) {
                self.render(&r, &mut out);
            }
        }
        (out, used)
    }

    fn render(&mut self, r: &Record, out: &mut Vec<u8>) {
        if self.opts.since.is_some_and(|s| r.time < s) {
            return;
        }
        let mut piece = Vec::with_capacity(r.content.len() + 40);
        if self.opts.timestamps && !self.continuing {
            piece.extend_from_slice(rfc3339_nano(r.time).as_bytes());
            piece.push(b' ');
        }
        piece.extend_from_slice(r.content);
        if !r.partial {
            piece.push(b'\n');
        }
        self.continuing = r.partial;
        if let Some(limit) = self.opts.limit {
            piece.truncate(limit.saturating_sub(self.written));
        }
        self.written += piece.len();
        out.extend_from_slice(&piece);
    }

    /// A whole file: its last `tail` lines, rendered. Returns the output and the bytes used.
    pub fn read_all(&mut self, content: &[u8]) -> (Vec<u8>, usize) {
        let start = self.opts.tail.map(|n| tail_start(content, n)).unwrap_or(0);
        let (out, used) = self.feed(&content[start..]);
        (out, start + used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2026-01-02T03:04:05.123456789Z stdout F one\n\
2026-01-02T03:04:06Z stderr F two\n\
2026-01-02T03:04:07.5Z stdout P thr\n\
2026-01-02T03:04:07.6Z stdout F ee\n\
garbage\n\
2026-01-02T03:04:08Z stdout F four\n\
2026-01-02T03:04:09Z stdout F unfinish";

    fn read(opts: Options) -> String {
        let (out, used) = Reader::new(opts).read_all(LOG);
        assert_eq!(&LOG[used..], b"2026-01-02T03:04:09Z stdout F unfinish");
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn lines_parse_and_times_print_as_go_does() {
        let r = parse(b"2026-01-02T03:04:05.120Z stderr F a b").expect("record");
        assert_eq!(
            (r.stream, r.partial, r.content),
            ("stderr", false, &b"a b"[..])
        );
        assert_eq!(rfc3339_nano(r.time), "2026-01-02T03:04:05.12Z");
        assert_eq!(
            parse(b"2026-01-02T03:04:05Z stdout F ").map(|r| r.content),
            Some(&b""[..])
        );
        assert!(parse(b"not a line").is_none());
        assert!(parse(b"2026-01-02T03:04:05Z stdout X y").is_none());
    }

    #[test]
    fn the_whole_log_joins_partial_lines() {
        assert_eq!(read(Options::default()), "one\ntwo\nthree\nfour\n");
    }

    #[test]
    fn timestamps_prefix_each_line_once() {
        let out = read(Options {
            timestamps: true,
            ..Default::default()
        });
        assert_eq!(
            out,
            "2026-01-02T03:04:05.123456789Z one\n2026-01-02T03:04:06Z two\n\
2026-01-02T03:04:07.5Z three\n2026-01-02T03:04:08Z four\n"
        );
    }

    #[test]
    fn tail_counts_file_lines_then_since_filters() {
        let tail = |n| {
            read(Options {
                tail: Some(n),
                ..Default::default()
            })
        };
        assert_eq!(tail(1), "four\n", "the unfinished line is not a line yet");
        assert_eq!(tail(2), "four\n", "garbage counts as a file line");
        assert_eq!(
            tail(3),
            "ee\nfour\n",
            "so does each fragment of a partial line"
        );
        assert_eq!(tail(4), "three\nfour\n");
        assert_eq!(tail(0), "");
        assert_eq!(tail(100), "one\ntwo\nthree\nfour\n");
        let since = read(Options {
            since: Some("2026-01-02T03:04:06Z".parse().expect("time")),
            ..Default::default()
        });
        assert_eq!(since, "two\nthree\nfour\n");
    }

    #[test]
    fn limit_bytes_cuts_the_output_prefixes_included() {
        let out = read(Options {
            limit: Some(6),
            ..Default::default()
        });
        assert_eq!(out, "one\ntw");
        let mut r = Reader::new(Options {
            limit: Some(3),
            timestamps: true,
            ..Default::default()
        });
        let (out, _) = r.read_all(LOG);
        assert_eq!(out, b"202");
        assert!(r.full());
    }

    #[test]
    fn following_feeds_only_finished_lines() {
        let mut r = Reader::new(Options::default());
        let (out, used) = r.feed(b"2026-01-02T03:04:05Z stdout F a\n2026-01-02T03:04:05Z std");
        assert_eq!((out.as_slice(), used), (&b"a\n"[..], 32));
        let (out, _) = r.feed(b"2026-01-02T03:04:05Z stdout F b\n");
        assert_eq!(out, b"b\n");
    }
}
