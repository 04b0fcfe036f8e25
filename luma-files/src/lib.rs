//! Binary asset sync for Luma.
//!
//! Records sync through `luma-sync`; their binary assets travel separately:
//!
//! * [`BlobStore`] is a minimal async store of blobs (put from a stream, get as a stream, head,
//!   delete) with its contract in rustdoc and conveniences in [`BlobStoreExt`]. Backends:
//!   [`MemoryBlobStore`], [`FsBlobStore`], [`S3BlobStore`] (any S3-compatible server through
//!   `object_store`), [`SupabaseBlobStore`] (Supabase Storage REST); [`FaultyStore`] and
//!   [`LatencyStore`] wrap any of them for tests. [`conformance`] checks the contract.
//! * Blobs are content addressed: the key is `<algo>/<hex>` ([`BlobKey`]), so identical
//!   content is stored once and a re-upload is a no-op.
//! * [`FileSync`] keeps a persistent transfer queue in `luma.db` (album art, full-resolution
//!   waveforms), streams transfers, verifies downloads before they land, and publishes
//!   progress and events. Audio and stem files are registered locally and never uploaded.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use luma_files::{BlobStore, FileSync, FileSyncConfig, MemoryBlobStore};
//! use luma_model::Track;
//! use luma_store::Store;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let blobs: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
//! let store = Store::open_in_memory().await?;
//! let files = FileSync::open(store, blobs, FileSyncConfig::new(dir.path().join("files"))).await?;
//!
//! let track = Track::new("Intro");
//! files.store().tracks().create(&track).await?;
//! let cover = dir.path().join("cover.png");
//! std::fs::write(&cover, b"\x89PNG\r\n\x1a\n...pixels...").unwrap();
//! let key = files.set_album_art(track.id, &cover).await?; // the record now carries `key`
//! assert_eq!(files.progress().borrow().uploads_pending, 1);
//! files.run_until_idle().await?; // uploads it
//! assert!(files.transfers().await?.is_empty());
//! # let _ = key;
//! # Ok::<(), luma_files::FilesError>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]
// docs.rs builds with `--cfg docsrs` (see [package.metadata.docs.rs]): items behind a feature show it.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod backends;
mod blob;
pub mod conformance;
mod error;
pub mod hash;
mod queue;
mod sniff;
mod sync;
mod transfer;
mod waveform;

pub use backends::faults::{Fault, FaultyStore, LatencyStore, Op};
pub use backends::fs::FsBlobStore;
pub use backends::memory::MemoryBlobStore;
pub use backends::s3::{S3BlobStore, S3Config};
pub use backends::supabase::{SupabaseBlobStore, SupabaseStorageConfig};
pub use blob::{
    reader_stream, BlobMeta, BlobStore, BlobStoreExt, ByteStream, GetResult, PutMode, PutOptions,
    PutOutcome,
};
pub use error::{AssetKind, BlobError, BoxError, FilesError};
pub use hash::{hash_file, track_hash, BlobKey, HashAlgo};
pub use queue::{Direction, Transfer, TransferState};
pub use sniff::{sniff_image, ImageType};
pub use sync::{FileEvent, FileProgress, FileSync, FileSyncConfig, LocalFile, RunSummary};
pub use transfer::{download_verified, upload_file};
pub use waveform::{decode_waveform, encode_waveform};
