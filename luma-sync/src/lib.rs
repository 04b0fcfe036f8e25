//! The Luma sync engine and the cloud SQL.
//!
//! [`cloud`] embeds the server schema (`luma-sync/cloud/migrations`) that a plain PostgreSQL or a
//! Supabase project runs: synced tables, row-level security and the `luma_*` RPC functions.
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod cloud;
