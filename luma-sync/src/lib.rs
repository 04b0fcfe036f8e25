//! The Luma sync engine and the cloud SQL.
//!
//! [`cloud`] embeds the server schema (`luma-sync/cloud/migrations`) that a plain PostgreSQL or a
//! Supabase project runs: synced tables, row-level security and the `luma_*` RPC functions.

pub mod cloud;
