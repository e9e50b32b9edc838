//! Content-defined chunking (FastCDC 2020) with a BLAKE3 hash per chunk, streaming through a
//! fixed buffer so a file of any size is chunked in constant memory.

use std::io::{self, Read};

use fastcdc::v2020::{Normalization, cut, select_masks};

use super::protocol::{CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, ChunkRef, Hash};

const BUFFER: usize = 4 << 20;

pub struct FileDigest {
    pub chunks: Vec<ChunkRef>,
    pub file_hash: Hash,
    pub size: u64,
}

/// A file's hash is derived from its chunk list (not from a second pass over the bytes), so each
/// side hashes every byte once; it still commits to every byte and to the chunk boundaries.
pub fn file_hash(chunks: &[ChunkRef]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"sovereign-mover file v1");
    h.update(&(chunks.len() as u64).to_le_bytes());
    for c in chunks {
        h.update(&c.hash);
        h.update(&c.len.to_le_bytes());
    }
    *h.finalize().as_bytes()
}

/// The length of the chunk that starts `data` (never 0, never past its end): one place for the
/// chunking parameters, which sender and receiver must apply identically.
fn next_cut(data: &[u8], (mask_s, mask_l): (u64, u64)) -> usize {
    let (_, count) = cut(
        data,
        CHUNK_MIN,
        CHUNK_AVG,
        CHUNK_MAX,
        mask_s,
        mask_l,
        mask_s << 1,
        mask_l << 1,
    );
    count.max(1).min(data.len())
}

pub fn chunk_hash(data: &[u8]) -> Hash {
    *blake3::hash(data).as_bytes()
}

/// Chunks and hashes a file already in memory (the same cut points as [`digest`]: a cut never
/// looks further than a maximal chunk ahead).
pub fn digest_bytes(data: &[u8]) -> FileDigest {
    let masks = select_masks(CHUNK_AVG, Normalization::Level1);
    let mut chunks = Vec::with_capacity(data.len() / CHUNK_AVG + 1);
    let mut start = 0usize;
    while start < data.len() {
        let count = next_cut(&data[start..], masks);
        chunks.push(ChunkRef {
            hash: chunk_hash(&data[start..start + count]),
            len: count as u32,
        });
        start += count;
    }
    FileDigest {
        file_hash: file_hash(&chunks),
        chunks,
        size: data.len() as u64,
    }
}

/// Chunks and hashes everything `reader` yields. `buf` is reused between calls.
pub fn digest(mut reader: impl Read, buf: &mut Vec<u8>) -> io::Result<FileDigest> {
    let (mask_s, mask_l) = select_masks(CHUNK_AVG, Normalization::Level1);
    if buf.len() < BUFFER {
        buf.resize(BUFFER, 0);
    }
    let mut chunks = Vec::new();
    let (mut start, mut end, mut eof, mut size) = (0usize, 0usize, false, 0u64);
    loop {
        // Keep at least a maximal chunk in view so cut points do not depend on how the file
        // happened to be read.
        if end - start < CHUNK_MAX && !eof {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            while end < buf.len() && !eof {
                match reader.read(&mut buf[end..]) {
                    Ok(0) => eof = true,
                    Ok(n) => end += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if start == end {
            break;
        }
        let count = next_cut(&buf[start..end], (mask_s, mask_l));
        let data = &buf[start..start + count];
        chunks.push(ChunkRef {
            hash: chunk_hash(data),
            len: count as u32,
        });
        size += count as u64;
        start += count;
    }
    Ok(FileDigest {
        file_hash: file_hash(&chunks),
        chunks,
        size,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Incompressible bytes from a seed (xorshift), for the mover's unit tests.
    pub(crate) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn cut_points_do_not_depend_on_read_sizes() {
        let data = pseudo_random(3 << 20, 7);
        let whole = digest(&data[..], &mut Vec::new()).unwrap();
        // A reader that returns 1000 bytes at a time.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(out.len()).min(1000);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let trickled = digest(Trickle(&data), &mut Vec::new()).unwrap();
        assert_eq!(whole.file_hash, trickled.file_hash);
        assert_eq!(whole.size, data.len() as u64);
        assert!(whole.chunks.len() > 10);
        assert!(whole.chunks.iter().all(|c| c.len as usize <= CHUNK_MAX));
        let in_memory = digest_bytes(&data);
        assert_eq!(whole.file_hash, in_memory.file_hash);
        assert_eq!(whole.chunks, in_memory.chunks);
        assert_eq!(digest_bytes(&[]).size, 0);
        assert!(digest_bytes(&[]).chunks.is_empty());
    }

    #[test]
    fn an_insertion_changes_only_nearby_chunks() {
        let data = pseudo_random(4 << 20, 9);
        let mut shifted = data.clone();
        shifted.splice(2 << 20..2 << 20, b"inserted bytes".iter().copied());
        let a = digest(&data[..], &mut Vec::new()).unwrap();
        let b = digest(&shifted[..], &mut Vec::new()).unwrap();
        let known: std::collections::HashSet<_> = a.chunks.iter().map(|c| c.hash).collect();
        let new = b.chunks.iter().filter(|c| !known.contains(&c.hash)).count();
        assert!(new <= 2, "{new} new chunks");
    }
}
