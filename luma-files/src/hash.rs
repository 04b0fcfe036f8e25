//! Content addressing: blob keys of the form `<algo>/<hex>` and streaming hashers.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use sha2::Digest;
use tokio::io::AsyncReadExt;

use crate::error::BlobError;

/// Size of the buffer used when hashing or copying files.
pub const CHUNK: usize = 64 * 1024;

/// A content hash algorithm. The algorithm is part of every key, so it can change without
/// breaking old references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HashAlgo {
    /// BLAKE3 (256-bit). The default for new blobs: fast.
    #[default]
    Blake3,
    /// SHA-256. Used for `Track::track_hash`.
    Sha256,
}

impl HashAlgo {
    /// The name used in keys.
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlgo::Blake3 => "blake3",
            HashAlgo::Sha256 => "sha256",
        }
    }

    /// A fresh streaming hasher.
    pub fn hasher(self) -> Hasher {
        match self {
            HashAlgo::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
            HashAlgo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }
}

/// A streaming hasher of one [`HashAlgo`].
#[derive(Clone)]
pub enum Hasher {
    /// BLAKE3.
    Blake3(Box<blake3::Hasher>),
    /// SHA-256.
    Sha256(sha2::Sha256),
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hasher::Blake3(_) => "Hasher(blake3)",
            Hasher::Sha256(_) => "Hasher(sha256)",
        })
    }
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    /// The key of everything fed so far.
    pub fn finish(self) -> BlobKey {
        match self {
            Hasher::Blake3(h) => BlobKey {
                algo: HashAlgo::Blake3,
                hex: h.finalize().to_hex().to_string(),
            },
            Hasher::Sha256(h) => BlobKey {
                algo: HashAlgo::Sha256,
                hex: hex::encode(h.finalize()),
            },
        }
    }
}

/// A content-addressed blob key: `<algo>/<64 lower-case hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey {
    algo: HashAlgo,
    hex: String,
}

impl PartialOrd for HashAlgo {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HashAlgo {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl BlobKey {
    /// The key of these bytes.
    pub fn of(algo: HashAlgo, bytes: &[u8]) -> Self {
        let mut h = algo.hasher();
        h.update(bytes);
        h.finish()
    }

    /// The algorithm.
    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    /// The digest in lower-case hex.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The key as stored (`blake3/…`).
    pub fn as_string(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.algo.as_str(), self.hex)
    }
}

impl FromStr for BlobKey {
    type Err = BlobError;

    fn from_str(s: &str) -> Result<Self, BlobError> {
        let bad = |reason| BlobError::InvalidKey {
            key: s.to_string(),
            reason,
        };
        let (algo, hex) = s
            .split_once('/')
            .ok_or_else(|| bad("no algorithm prefix"))?;
        let algo = match algo {
            "blake3" => HashAlgo::Blake3,
            "sha256" => HashAlgo::Sha256,
            _ => return Err(bad("unknown hash algorithm")),
        };
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("the digest must be 64 lower-case hex digits"));
        }
        Ok(BlobKey {
            algo,
            hex: hex.to_string(),
        })
    }
}

/// Hashes a file streaming (64 KiB at a time; memory use does not grow with the file).
/// Returns the key and the file's size.
pub async fn hash_file(algo: HashAlgo, path: &Path) -> Result<(BlobKey, u64), BlobError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(BlobError::io(format!("opening {}", path.display())))?;
    let mut hasher = algo.hasher();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(BlobError::io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hasher.finish(), size))
}

/// The SHA-256 of an audio file as `Track::track_hash` wants it (64 lower-case hex digits),
/// computed streaming.
pub async fn track_hash(path: &Path) -> Result<String, BlobError> {
    let (key, _) = hash_file(HashAlgo::Sha256, path).await?;
    Ok(key.hex)
}

/// Checks a (not necessarily content-addressed) key: non-empty, at most 1024 bytes, segments
/// of `[A-Za-z0-9._-]` separated by single `/`, no `.` or `..` segment.
pub fn validate_key(key: &str) -> Result<(), BlobError> {
    let bad = |reason| BlobError::InvalidKey {
        key: key.to_string(),
        reason,
    };
    if key.is_empty() {
        return Err(bad("empty"));
    }
    if key.len() > 1024 {
        return Err(bad("longer than 1024 bytes"));
    }
    for seg in key.split('/') {
        if seg.is_empty() {
            return Err(bad("empty path segment"));
        }
        if seg == "." || seg == ".." {
            return Err(bad("relative path segment"));
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad("characters outside [A-Za-z0-9._-/]"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_carry_the_algorithm() {
        let k = BlobKey::of(HashAlgo::Sha256, b"abc");
        assert_eq!(
            k.to_string(),
            "sha256/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(k.to_string().parse::<BlobKey>().unwrap(), k);
        let b = BlobKey::of(HashAlgo::Blake3, b"abc");
        assert!(b.to_string().starts_with("blake3/"));
        assert_ne!(b.hex(), k.hex());
        assert!("md5/abc".parse::<BlobKey>().is_err());
        assert!("sha256/ABC".parse::<BlobKey>().is_err());
    }

    #[test]
    fn key_validation() {
        assert!(validate_key("blake3/ab").is_ok());
        for bad in ["", "/a", "a//b", "a/../b", "a b", "a/"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn track_hash_is_streaming_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let h = track_hash(&p).await.unwrap();
        assert_eq!(h, BlobKey::of(HashAlgo::Sha256, &data).hex());
        assert_eq!(h.len(), 64);
    }
}
