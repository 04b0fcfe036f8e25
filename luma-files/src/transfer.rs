//! Streaming, verified transfers between local files and a [`BlobStore`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::blob::{reader_stream, BlobStore, ByteStream, PutOptions, PutOutcome};
use crate::error::BlobError;
use crate::hash::{BlobKey, Hasher};

/// Called with the number of bytes that just moved.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// Prefix of temp files of downloads in progress (removed when file sync starts).
pub const PART_PREFIX: &str = ".luma-part-";

/// Uploads a file under its content-addressed key (store-if-absent), streaming. The bytes are
/// hashed as they are sent; if they do not hash to `key` (the file changed since it was
/// hashed) the body ends with [`BlobError::HashMismatch`], so the put fails and nothing is
/// stored under the wrong key.
pub async fn upload_file(
    store: &dyn BlobStore,
    key: &BlobKey,
    path: &Path,
    content_type: Option<&str>,
    progress: Option<ProgressFn>,
) -> Result<PutOutcome, BlobError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(BlobError::io(format!("opening {}", path.display())))?;
    let size = file.metadata().await.ok().map(|m| m.len());
    let body = verifying(reader_stream(file), key.clone(), progress);
    let options = PutOptions {
        content_type: content_type.map(str::to_string),
        size_hint: size,
        ..PutOptions::default()
    };
    store.put(&key.to_string(), body, options).await
}

/// Wraps a body so that it fails at its end unless its bytes hash to `key`.
fn verifying(body: ByteStream, key: BlobKey, progress: Option<ProgressFn>) -> ByteStream {
    struct St {
        body: ByteStream,
        hasher: Option<Hasher>,
        key: BlobKey,
        progress: Option<ProgressFn>,
    }
    let st = St {
        hasher: Some(key.algo().hasher()),
        body,
        key,
        progress,
    };
    futures::stream::unfold(st, |mut st| async move {
        let hasher = st.hasher.as_mut()?;
        match st.body.next().await {
            Some(Ok(chunk)) => {
                hasher.update(&chunk);
                if let Some(p) = &st.progress {
                    p(chunk.len() as u64);
                }
                Some((Ok(chunk), st))
            }
            Some(Err(e)) => {
                st.hasher = None;
                Some((Err(e), st))
            }
            None => {
                let actual = st.hasher.take()?.finish();
                if actual == st.key {
                    None
                } else {
                    let err = BlobError::HashMismatch {
                        key: st.key.to_string(),
                        actual: actual.to_string(),
                    };
                    Some((Err::<Bytes, _>(err), st))
                }
            }
        }
    })
    .boxed()
}

/// Removes a temp file when dropped unless disarmed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Downloads the blob `key` to `dest`: streams it into a temp file beside `dest`, checks
/// that the bytes hash to `key`, fsyncs, then renames over `dest`. On any error (including
/// a corrupt download) the temp file is removed and an existing `dest` is left untouched.
/// Returns the size.
pub async fn download_verified(
    store: &dyn BlobStore,
    key: &BlobKey,
    dest: &Path,
    progress: Option<ProgressFn>,
) -> Result<u64, BlobError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(BlobError::io(format!("creating {}", dir.display())))?;
    let tmp = dir.join(format!("{PART_PREFIX}{}", uuid::Uuid::new_v4()));
    let mut guard = TempGuard(Some(tmp.clone()));
    let mut got = store.get(&key.to_string()).await?;
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .map_err(BlobError::io(format!("creating {}", tmp.display())))?;
    let mut hasher = key.algo().hasher();
    let mut size = 0u64;
    while let Some(chunk) = got.stream.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(BlobError::io(format!("writing {}", tmp.display())))?;
        size += chunk.len() as u64;
        if let Some(p) = &progress {
            p(chunk.len() as u64);
        }
    }
    let actual = hasher.finish();
    if &actual != key {
        tracing::warn!(key = %key, actual = %actual, "rejected a corrupt download");
        return Err(BlobError::HashMismatch {
            key: key.to_string(),
            actual: actual.to_string(),
        });
    }
    file.flush()
        .await
        .map_err(BlobError::io(format!("writing {}", tmp.display())))?;
    file.sync_all()
        .await
        .map_err(BlobError::io(format!("syncing {}", tmp.display())))?;
    drop(file);
    tokio::fs::rename(&tmp, dest)
        .await
        .map_err(BlobError::io(format!("renaming into {}", dest.display())))?;
    guard.0 = None;
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
    Ok(size)
}
