//! The Luma sync engine (skeleton: the next issues fill it).
//!
//! Nothing here works yet and nothing pretends to: the crate has no public items. It exists so
//! the workspace, the `luma` facade (`sync` feature) and the dependency direction
//! (model <- store <- sync) are in place. What will live here:
//!
//! - **`Local` and `Remote` traits**: the two seams of the engine. `Local` is the device side,
//!   implemented over `luma-store` (its outbox of pending ops, per-user pull cursors, applying
//!   pulled rows without producing new ops); `Remote` is the server side.
//! - **Push**: drains the store's pending ops in foreign-key order (parents first for upserts,
//!   children first for deletes), in batches that the server applies in one transaction. A
//!   re-sent batch is a no-op; every op ends applied, superseded or rejected (kept and visible
//!   with the server's reason until it is retried or discarded), never silently dropped.
//! - **Pull**: per-user, per-table cursors handed out by the server in an order a late
//!   transaction cannot sneak behind; a pulled page and its cursor commit in one SQLite
//!   transaction. Tombstones remove local rows; losing access to a venue removes its rows.
//! - **Conflicts**: last writer wins by the hybrid logical clock of `luma-model`, the same rule
//!   on every replica and on the server.
//! - **Orchestrator and status**: a full cycle is pull then push; pushes run soon after local
//!   changes; status is a plain struct published on change.
//! - **Remotes**: an in-memory fake with fault injection (for property tests of apps built on
//!   Luma), PostgreSQL through sqlx (row-level security exercised as PostgREST does), and
//!   Supabase over HTTP; plus the server-side SQL they share, under `luma-sync/cloud/`.
//! - **A conformance suite** of `check_*` functions every `Remote` must pass.
//!
//! Until then, an app can already use `luma-store` alone: every local write records its
//! pending op, so nothing written before sync exists is lost to sync later.
#![warn(missing_docs)]
