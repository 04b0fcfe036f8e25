//! Test wrappers that are ordinary [`BlobStore`]s: [`FaultyStore`] injects faults,
//! [`LatencyStore`] adds delays.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::blob::{BlobMeta, BlobStore, ByteStream, GetResult, PutOptions, PutOutcome};
use crate::error::BlobError;

/// Which operation a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`BlobStore::put`].
    Put,
    /// [`BlobStore::get`].
    Get,
    /// [`BlobStore::head`].
    Head,
    /// [`BlobStore::delete`].
    Delete,
}

/// A fault for the next call of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The call fails at once with [`BlobError::Injected`].
    Fail {
        /// Whether the error claims to be transient.
        retryable: bool,
    },
    /// The call answers [`BlobError::NotFound`] (without asking the inner store).
    NotFound,
    /// The body (put) or the read (get) breaks off with a retryable error after this many
    /// bytes.
    BreakAfter(u64),
    /// The body or read stops after this many bytes and never continues (a hung connection or
    /// a process about to be killed); cancel the future to end it.
    StallAfter(u64),
    /// get: one byte of the content is flipped (a corrupt download).
    Corrupt,
}

/// Wraps a store and applies queued faults to its calls, counting calls per operation.
#[derive(Debug, Clone)]
pub struct FaultyStore<S> {
    inner: S,
    faults: Arc<Mutex<HashMap<Op, VecDeque<Fault>>>>,
    calls: Arc<Mutex<HashMap<Op, u64>>>,
}

impl<S: BlobStore> FaultyStore<S> {
    /// Wraps `inner` with no faults queued.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            faults: Arc::default(),
            calls: Arc::default(),
        }
    }

    /// Queues a fault for the next not-yet-faulted call of `op`.
    pub fn inject(&self, op: Op, fault: Fault) {
        if let Ok(mut f) = self.faults.lock() {
            f.entry(op).or_default().push_back(fault);
        }
    }

    /// Drops all queued faults.
    pub fn clear(&self) {
        if let Ok(mut f) = self.faults.lock() {
            f.clear();
        }
    }

    /// How many times `op` was called.
    pub fn calls(&self, op: Op) -> u64 {
        self.calls
            .lock()
            .ok()
            .and_then(|c| c.get(&op).copied())
            .unwrap_or(0)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn next(&self, op: Op) -> Option<Fault> {
        if let Ok(mut c) = self.calls.lock() {
            *c.entry(op).or_default() += 1;
        }
        self.faults
            .lock()
            .ok()
            .and_then(|mut f| f.get_mut(&op).and_then(VecDeque::pop_front))
    }
}

fn injected(key: &str, message: &str, retryable: bool) -> BlobError {
    BlobError::Injected {
        key: key.into(),
        message: message.into(),
        retryable,
    }
}

/// Applies a stream fault: break off, stall or corrupt after `limit` bytes.
fn damage(stream: ByteStream, key: &str, fault: Fault) -> ByteStream {
    let key = key.to_string();
    let (limit, kind) = match fault {
        Fault::BreakAfter(n) => (n, 0u8),
        Fault::StallAfter(n) => (n, 1),
        Fault::Corrupt => (0, 2),
        _ => return stream,
    };
    let mut passed = 0u64;
    let mut done = false;
    stream
        .flat_map(move |item| {
            let out: ByteStream = match item {
                Err(e) => futures::stream::iter([Err(e)]).boxed(),
                Ok(_) if done => futures::stream::empty().boxed(),
                Ok(chunk) if kind == 2 => {
                    if passed == 0 && !chunk.is_empty() {
                        let mut v = chunk.to_vec();
                        let mid = v.len() / 2;
                        v[mid] ^= 0xff;
                        passed = 1;
                        futures::stream::iter([Ok(Bytes::from(v))]).boxed()
                    } else {
                        futures::stream::iter([Ok(chunk)]).boxed()
                    }
                }
                Ok(chunk) => {
                    let len = chunk.len() as u64;
                    if passed + len <= limit {
                        passed += len;
                        futures::stream::iter([Ok(chunk)]).boxed()
                    } else {
                        let keep = usize::try_from(limit - passed).unwrap_or(0);
                        passed = limit;
                        done = true;
                        let head = futures::stream::iter([Ok(chunk.slice(..keep))]);
                        if kind == 0 {
                            head.chain(futures::stream::iter([Err(injected(
                                &key,
                                "connection reset mid-transfer",
                                true,
                            ))]))
                            .boxed()
                        } else {
                            head.chain(futures::stream::pending()).boxed()
                        }
                    }
                }
            };
            out
        })
        .boxed()
}

#[async_trait]
impl<S: BlobStore> BlobStore for FaultyStore<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn put(
        &self,
        key: &str,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<PutOutcome, BlobError> {
        match self.next(Op::Put) {
            None => self.inner.put(key, body, options).await,
            Some(Fault::Fail { retryable }) => Err(injected(key, "put failed", retryable)),
            Some(Fault::NotFound) => Err(BlobError::NotFound { key: key.into() }),
            Some(f) => self.inner.put(key, damage(body, key, f), options).await,
        }
    }

    async fn get(&self, key: &str) -> Result<GetResult, BlobError> {
        match self.next(Op::Get) {
            None => self.inner.get(key).await,
            Some(Fault::Fail { retryable }) => Err(injected(key, "get failed", retryable)),
            Some(Fault::NotFound) => Err(BlobError::NotFound { key: key.into() }),
            Some(f) => {
                let got = self.inner.get(key).await?;
                Ok(GetResult {
                    meta: got.meta,
                    stream: damage(got.stream, key, f),
                })
            }
        }
    }

    async fn head(&self, key: &str) -> Result<BlobMeta, BlobError> {
        match self.next(Op::Head) {
            Some(Fault::Fail { retryable }) => Err(injected(key, "head failed", retryable)),
            Some(Fault::NotFound) => Err(BlobError::NotFound { key: key.into() }),
            _ => self.inner.head(key).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.next(Op::Delete) {
            Some(Fault::Fail { retryable }) => Err(injected(key, "delete failed", retryable)),
            _ => self.inner.delete(key).await,
        }
    }
}

/// Wraps a store and sleeps before every call (and optionally between body chunks), to test
/// progress reporting, timeouts and concurrency.
#[derive(Debug, Clone)]
pub struct LatencyStore<S> {
    inner: S,
    per_call: Duration,
    per_chunk: Duration,
}

impl<S: BlobStore> LatencyStore<S> {
    /// Adds `per_call` before each call.
    pub fn new(inner: S, per_call: Duration) -> Self {
        Self {
            inner,
            per_call,
            per_chunk: Duration::ZERO,
        }
    }

    /// Also sleeps `per_chunk` before each chunk of a get's stream.
    pub fn with_chunk_delay(mut self, per_chunk: Duration) -> Self {
        self.per_chunk = per_chunk;
        self
    }
}

#[async_trait]
impl<S: BlobStore> BlobStore for LatencyStore<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn put(
        &self,
        key: &str,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<PutOutcome, BlobError> {
        tokio::time::sleep(self.per_call).await;
        self.inner.put(key, body, options).await
    }

    async fn get(&self, key: &str) -> Result<GetResult, BlobError> {
        tokio::time::sleep(self.per_call).await;
        let got = self.inner.get(key).await?;
        if self.per_chunk.is_zero() {
            return Ok(got);
        }
        let d = self.per_chunk;
        Ok(GetResult {
            meta: got.meta,
            stream: got
                .stream
                .then(move |c| async move {
                    tokio::time::sleep(d).await;
                    c
                })
                .boxed(),
        })
    }

    async fn head(&self, key: &str) -> Result<BlobMeta, BlobError> {
        tokio::time::sleep(self.per_call).await;
        self.inner.head(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        tokio::time::sleep(self.per_call).await;
        self.inner.delete(key).await
    }
}
