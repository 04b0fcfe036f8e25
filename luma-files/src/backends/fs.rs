//! A local file system [`BlobStore`]: one file per blob under a root directory.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::blob::{
    reader_stream, BlobMeta, BlobStore, ByteStream, GetResult, PutMode, PutOptions, PutOutcome,
};
use crate::error::BlobError;
use crate::hash::validate_key;

const TMP_DIR: &str = ".tmp";
/// Temp files older than this are leftovers of a crash.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// Blobs as files under `root` (a key's `/` separators become directories).
///
/// A put writes a temp file under `root/.tmp`, fsyncs it, then links it into place
/// (`IfAbsent`: a hard link, which fails atomically if the key exists) or renames it over the
/// old file (`Overwrite`), then fsyncs the directory. A failed or cancelled put removes its temp
/// file; a crash leaves at most one, which a later [`FsBlobStore::new`] removes once it is an
/// hour old (several processes may share a root).
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

/// Removes a temp file when dropped (a put that failed or was cancelled half-way).
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl FsBlobStore {
    /// Opens (creating) a store rooted at `root` and removes temp files left by a crash.
    pub async fn new(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        let tmp = root.join(TMP_DIR);
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(BlobError::io(format!("creating {}", tmp.display())))?;
        let mut entries = tokio::fs::read_dir(&tmp)
            .await
            .map_err(BlobError::io(format!("listing {}", tmp.display())))?;
        while let Ok(Some(e)) = entries.next_entry().await {
            // Only stale ones: another process may be writing into a shared root right now.
            let stale = e
                .metadata()
                .await
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_TEMP);
            if stale {
                let _ = tokio::fs::remove_file(e.path()).await;
            }
        }
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, BlobError> {
        validate_key(key)?;
        if key == TMP_DIR || key.starts_with(".tmp/") {
            return Err(BlobError::InvalidKey {
                key: key.into(),
                reason: "reserved prefix .tmp",
            });
        }
        Ok(self.root.join(key))
    }
}

async fn sync_dir(dir: &Path) {
    // Best effort: persists the rename/link on platforms that allow opening a directory.
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    fn name(&self) -> &'static str {
        "fs"
    }

    async fn put(
        &self,
        key: &str,
        mut body: ByteStream,
        options: PutOptions,
    ) -> Result<PutOutcome, BlobError> {
        let dest = self.path_of(key)?;
        if options.mode == PutMode::IfAbsent && tokio::fs::try_exists(&dest).await.unwrap_or(false)
        {
            return Ok(PutOutcome::AlreadyExists);
        }
        let tmp = self
            .root
            .join(TMP_DIR)
            .join(format!("{}.part", uuid::Uuid::new_v4()));
        let guard = TempGuard(Some(tmp.clone()));
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(BlobError::io(format!("creating {}", tmp.display())))?;
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            file.write_all(&chunk)
                .await
                .map_err(BlobError::io(format!("writing {}", tmp.display())))?;
            size += chunk.len() as u64;
        }
        file.flush()
            .await
            .map_err(BlobError::io(format!("writing {}", tmp.display())))?;
        file.sync_all()
            .await
            .map_err(BlobError::io(format!("syncing {}", tmp.display())))?;
        drop(file);
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(BlobError::io(format!("creating {}", parent.display())))?;
        let outcome = match options.mode {
            PutMode::Overwrite => {
                tokio::fs::rename(&tmp, &dest)
                    .await
                    .map_err(BlobError::io(format!("renaming into {}", dest.display())))?;
                PutOutcome::Stored { size }
            }
            PutMode::IfAbsent => match tokio::fs::hard_link(&tmp, &dest).await {
                Ok(()) => PutOutcome::Stored { size },
                Err(e) if e.kind() == ErrorKind::AlreadyExists => PutOutcome::AlreadyExists,
                Err(e) => {
                    // File systems without hard links: check, then rename (not atomic against
                    // a racing put of the same key, harmless for content-addressed keys).
                    tracing::debug!(error = %e, "hard link failed; falling back to rename");
                    if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
                        PutOutcome::AlreadyExists
                    } else {
                        tokio::fs::rename(&tmp, &dest)
                            .await
                            .map_err(BlobError::io(format!("renaming into {}", dest.display())))?;
                        PutOutcome::Stored { size }
                    }
                }
            },
        };
        drop(guard);
        sync_dir(&parent).await;
        Ok(outcome)
    }

    async fn get(&self, key: &str) -> Result<GetResult, BlobError> {
        let path = self.path_of(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(BlobError::NotFound { key: key.into() })
            }
            Err(e) => {
                return Err(BlobError::Io {
                    context: format!("opening {}", path.display()),
                    source: e,
                })
            }
        };
        let md = file
            .metadata()
            .await
            .map_err(BlobError::io(format!("reading {}", path.display())))?;
        if !md.is_file() {
            return Err(BlobError::NotFound { key: key.into() });
        }
        Ok(GetResult {
            meta: BlobMeta {
                key: key.into(),
                size: md.len(),
                content_type: None,
            },
            stream: reader_stream(file),
        })
    }

    async fn head(&self, key: &str) -> Result<BlobMeta, BlobError> {
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(md) if md.is_file() => Ok(BlobMeta {
                key: key.into(),
                size: md.len(),
                content_type: None,
            }),
            Ok(_) => Err(BlobError::NotFound { key: key.into() }),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(BlobError::NotFound { key: key.into() })
            }
            Err(e) => Err(BlobError::Io {
                context: format!("reading {}", path.display()),
                source: e,
            }),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlobError::Io {
                context: format!("deleting {}", path.display()),
                source: e,
            }),
        }
    }
}
