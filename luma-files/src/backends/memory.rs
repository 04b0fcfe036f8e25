//! An in-memory [`BlobStore`] (tests, and the fake remote of downstream testers).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::blob::{BlobMeta, BlobStore, ByteStream, GetResult, PutMode, PutOptions, PutOutcome};
use crate::error::BlobError;
use crate::hash::validate_key;

#[derive(Debug, Clone)]
struct Entry {
    bytes: Bytes,
    content_type: Option<String>,
}

/// Blobs in a map behind a mutex. Clones share the same map, so two "devices" can use one
/// store. A put buffers its body and inserts it at the end (atomic).
#[derive(Debug, Clone, Default)]
pub struct MemoryBlobStore {
    map: Arc<Mutex<BTreeMap<String, Entry>>>,
    puts_stored: Arc<Mutex<u64>>,
}

impl MemoryBlobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of blobs stored.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True if no blob is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys stored, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.map
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How many puts actually wrote a body (not counting `AlreadyExists` answers).
    pub fn stored_count(&self) -> u64 {
        self.puts_stored.lock().map(|n| *n).unwrap_or(0)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, Entry>>, BlobError> {
        self.map.lock().map_err(|_| BlobError::Io {
            context: "memory blob store".into(),
            source: std::io::Error::other("lock poisoned"),
        })
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn put(
        &self,
        key: &str,
        mut body: ByteStream,
        options: PutOptions,
    ) -> Result<PutOutcome, BlobError> {
        validate_key(key)?;
        if options.mode == PutMode::IfAbsent && self.lock()?.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        let mut buf = BytesMut::new();
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk?);
        }
        let size = buf.len() as u64;
        let mut map = self.lock()?;
        if options.mode == PutMode::IfAbsent && map.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        map.insert(
            key.to_string(),
            Entry {
                bytes: buf.freeze(),
                content_type: options.content_type,
            },
        );
        drop(map);
        if let Ok(mut n) = self.puts_stored.lock() {
            *n += 1;
        }
        Ok(PutOutcome::Stored { size })
    }

    async fn get(&self, key: &str) -> Result<GetResult, BlobError> {
        validate_key(key)?;
        let entry = self
            .lock()?
            .get(key)
            .cloned()
            .ok_or_else(|| BlobError::NotFound { key: key.into() })?;
        let meta = BlobMeta {
            key: key.to_string(),
            size: entry.bytes.len() as u64,
            content_type: entry.content_type,
        };
        // Serve in chunks like a network backend would.
        let bytes = entry.bytes;
        let chunks: Vec<Result<Bytes, BlobError>> = (0..bytes.len())
            .step_by(crate::hash::CHUNK)
            .map(|i| Ok(bytes.slice(i..(i + crate::hash::CHUNK).min(bytes.len()))))
            .collect();
        Ok(GetResult {
            meta,
            stream: futures::stream::iter(chunks).boxed(),
        })
    }

    async fn head(&self, key: &str) -> Result<BlobMeta, BlobError> {
        validate_key(key)?;
        let map = self.lock()?;
        let e = map
            .get(key)
            .ok_or_else(|| BlobError::NotFound { key: key.into() })?;
        Ok(BlobMeta {
            key: key.to_string(),
            size: e.bytes.len() as u64,
            content_type: e.content_type.clone(),
        })
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        self.lock()?.remove(key);
        Ok(())
    }
}
