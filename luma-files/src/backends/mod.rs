//! [`crate::BlobStore`] implementations.

pub mod faults;
pub mod fs;
pub mod memory;
pub mod s3;
pub mod supabase;
