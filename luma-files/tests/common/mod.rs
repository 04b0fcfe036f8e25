//! Shared test helpers.
#![allow(dead_code)]

pub mod supabase_fake;

/// A fresh prefix per run (keys of runs sharing a bucket never collide).
pub fn run_prefix(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}
