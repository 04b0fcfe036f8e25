//! The [`BlobStore`] trait, its contract, and conveniences in [`BlobStoreExt`].

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::error::BlobError;
use crate::hash::{BlobKey, HashAlgo, CHUNK};

/// A stream of byte chunks: the body of a put or a get.
pub type ByteStream = BoxStream<'static, Result<Bytes, BlobError>>;

/// What a put does when the key already holds a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PutMode {
    /// Store only if the key is free. If a blob already exists under the key, nothing is
    /// written and the put answers [`PutOutcome::AlreadyExists`]. This is the mode for
    /// content-addressed keys: identical content is stored once and a re-upload is a no-op.
    #[default]
    IfAbsent,
    /// Replace whatever is stored under the key.
    Overwrite,
}

/// Options of a put.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Overwrite or store-if-absent.
    pub mode: PutMode,
    /// The MIME type stored with the blob (backends that keep one).
    pub content_type: Option<String>,
    /// The body's length if known (lets backends choose single vs multipart uploads).
    pub size_hint: Option<u64>,
}

impl PutOptions {
    /// Store-if-absent with this content type.
    pub fn if_absent(content_type: Option<&str>) -> Self {
        Self {
            mode: PutMode::IfAbsent,
            content_type: content_type.map(str::to_string),
            size_hint: None,
        }
    }
}

/// What a successful put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The body was stored (new key, or replaced under [`PutMode::Overwrite`]).
    Stored {
        /// Bytes written.
        size: u64,
    },
    /// [`PutMode::IfAbsent`] and a blob already existed under the key: nothing was written.
    AlreadyExists,
}

/// What [`BlobStore::head`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type, when the backend keeps one.
    pub content_type: Option<String>,
}

/// A blob being read: its metadata and its bytes as a stream.
pub struct GetResult {
    /// Metadata (size is the full blob size).
    pub meta: BlobMeta,
    /// The bytes. An error item means the read broke off; the caller must discard what it got.
    pub stream: ByteStream,
}

impl std::fmt::Debug for GetResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetResult")
            .field("meta", &self.meta)
            .finish()
    }
}

/// A store of immutable-ish binary blobs under string keys.
///
/// # Contract (checked for every backend by [`crate::conformance`])
///
/// * **Keys** are `/`-separated segments of `[A-Za-z0-9._-]` (see
///   [`crate::hash::validate_key`]); other keys fail with [`BlobError::InvalidKey`] before any
///   IO. File sync uses content-addressed keys `<algo>/<hex>` ([`BlobKey`]).
/// * **put is atomic.** A reader sees either no blob or the complete body, never a prefix. If
///   the body stream yields an error or the future is dropped half-way, nothing becomes
///   visible under the key (a previous blob under the key stays as it was). Bodies are
///   streamed: a backend never holds a whole large body in memory (at most one multipart chunk).
/// * **"Already exists"** means a blob is stored under the key. With [`PutMode::IfAbsent`] the
///   put then writes nothing and answers `Ok(PutOutcome::AlreadyExists)`; it is not an error.
///   For content-addressed keys the same key implies the same content, so a repeated put of
///   identical content is an idempotent no-op. On backends without a conditional write
///   (S3 via `object_store` here) `IfAbsent` is check-then-put: two racing puts of the same key
///   may both store, which is harmless for content-addressed keys.
/// * **get** streams the blob; a missing key is [`BlobError::NotFound`] (never a retryable
///   error). get does not verify content hashes; [`BlobStoreExt::get_verified`] does.
/// * **head** answers the size (and content type when kept), or `NotFound`.
/// * **delete** is idempotent: deleting a missing key succeeds.
/// * Errors say whether a retry may help ([`BlobError::is_retryable`]).
#[async_trait]
pub trait BlobStore: std::fmt::Debug + Send + Sync + 'static {
    /// A short name for logs and errors (`"memory"`, `"fs"`, `"s3"`, `"supabase"`).
    fn name(&self) -> &'static str;

    /// Stores the body under `key` (see the trait's contract).
    async fn put(
        &self,
        key: &str,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<PutOutcome, BlobError>;

    /// Reads the blob under `key` as a stream.
    async fn get(&self, key: &str) -> Result<GetResult, BlobError>;

    /// The blob's metadata, or [`BlobError::NotFound`].
    async fn head(&self, key: &str) -> Result<BlobMeta, BlobError>;

    /// Deletes the blob under `key`; succeeds if there is none.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
}

#[async_trait]
impl<T: BlobStore + ?Sized> BlobStore for Arc<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    async fn put(
        &self,
        key: &str,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<PutOutcome, BlobError> {
        (**self).put(key, body, options).await
    }
    async fn get(&self, key: &str) -> Result<GetResult, BlobError> {
        (**self).get(key).await
    }
    async fn head(&self, key: &str) -> Result<BlobMeta, BlobError> {
        (**self).head(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        (**self).delete(key).await
    }
}

/// A stream reading `reader` in chunks of 64 KiB.
pub fn reader_stream<R: AsyncRead + Send + 'static>(reader: R) -> ByteStream {
    tokio_util::io::ReaderStream::with_capacity(reader, CHUNK)
        .map_err(|source| BlobError::Io {
            context: "reading the upload body".into(),
            source,
        })
        .boxed()
}

/// Conveniences over any [`BlobStore`].
#[async_trait]
pub trait BlobStoreExt: BlobStore {
    /// Puts in-memory bytes.
    async fn put_bytes(
        &self,
        key: &str,
        bytes: Bytes,
        options: PutOptions,
    ) -> Result<PutOutcome, BlobError> {
        let body = futures::stream::once(async move { Ok(bytes) }).boxed();
        self.put(key, body, options).await
    }

    /// Puts everything `reader` yields, streaming.
    async fn put_reader<R: AsyncRead + Send + 'static>(
        &self,
        key: &str,
        reader: R,
        options: PutOptions,
    ) -> Result<PutOutcome, BlobError> {
        self.put(key, reader_stream(reader), options).await
    }

    /// Puts a local file, streaming.
    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        mut options: PutOptions,
    ) -> Result<PutOutcome, BlobError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(BlobError::io(format!("opening {}", path.display())))?;
        if options.size_hint.is_none() {
            options.size_hint = file.metadata().await.ok().map(|m| m.len());
        }
        self.put_reader(key, file, options).await
    }

    /// Stores bytes under their content-addressed key (store-if-absent): identical content is
    /// stored once. Returns the key and what the put did.
    async fn put_content(
        &self,
        algo: HashAlgo,
        bytes: Bytes,
        content_type: Option<&str>,
    ) -> Result<(BlobKey, PutOutcome), BlobError> {
        let key = BlobKey::of(algo, &bytes);
        let outcome = self
            .put_bytes(&key.to_string(), bytes, PutOptions::if_absent(content_type))
            .await?;
        Ok((key, outcome))
    }

    /// Reads the whole blob into memory (small blobs only).
    async fn get_bytes(&self, key: &str) -> Result<Bytes, BlobError> {
        let mut got = self.get(key).await?;
        let mut out = Vec::with_capacity(usize::try_from(got.meta.size).unwrap_or(0).min(1 << 24));
        while let Some(chunk) = got.stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(Bytes::from(out))
    }

    /// Streams the blob into `writer`; returns the number of bytes written. If `verify` is a
    /// key, the bytes must hash to it or [`BlobError::HashMismatch`] is returned (after the
    /// bytes were written: write to a temp file and discard it on error).
    async fn get_to_writer<W: AsyncWrite + Unpin + Send>(
        &self,
        key: &str,
        writer: &mut W,
        verify: Option<&BlobKey>,
    ) -> Result<u64, BlobError> {
        let mut got = self.get(key).await?;
        let mut hasher = verify.map(|k| k.algo().hasher());
        let mut n = 0u64;
        while let Some(chunk) = got.stream.next().await {
            let chunk = chunk?;
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            writer
                .write_all(&chunk)
                .await
                .map_err(BlobError::io(format!("writing {key}")))?;
            n += chunk.len() as u64;
        }
        writer
            .flush()
            .await
            .map_err(BlobError::io(format!("writing {key}")))?;
        if let (Some(h), Some(expected)) = (hasher, verify) {
            let actual = h.finish();
            if &actual != expected {
                return Err(BlobError::HashMismatch {
                    key: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        Ok(n)
    }

    /// Reads a content-addressed blob into memory and checks that it hashes to its key.
    async fn get_verified(&self, key: &BlobKey) -> Result<Bytes, BlobError> {
        let bytes = self.get_bytes(&key.to_string()).await?;
        let actual = BlobKey::of(key.algo(), &bytes);
        if &actual != key {
            return Err(BlobError::HashMismatch {
                key: key.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// True if a blob exists under `key`.
    async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<T: BlobStore + ?Sized> BlobStoreExt for T {}
