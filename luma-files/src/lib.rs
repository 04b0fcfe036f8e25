//! Binary asset sync for Luma (skeleton: the next issues fill it).
//!
//! Nothing here works yet and nothing pretends to: the crate has no public items. It exists so
//! the workspace and the `luma` facade (`files` feature) are in place. What will live here:
//!
//! - **The `BlobStore` trait**: put, get, head and delete of immutable blobs named by their
//!   content hash, with its contract in rustdoc, and backends: in memory (for tests), the local
//!   file system, S3-compatible object storage, and Supabase Storage.
//! - **Content hashing**: blobs are keyed by the SHA-256 of their bytes, so an upload is
//!   idempotent and two devices with the same file agree on its reference.
//! - **The transfer queue**: uploads and downloads of album art and full-resolution waveforms
//!   (records carry only the reference, such as `album_art_ref` or `full_ref`), retried with
//!   backoff and kept on the device. Audio and stem files never leave the device.
//! - **A conformance suite** of `check_*` functions every `BlobStore` must pass.
#![warn(missing_docs)]
