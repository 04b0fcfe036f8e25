//! The Supabase cloud over HTTP (feature `supabase`, on by default):
//!
//! - [`SupabaseRemote`]: the [`Remote`](crate::Remote) calling the cloud functions through
//!   PostgREST (`POST {url}/rest/v1/rpc/<fn>`).
//! - [`SupabaseSession`]: the Supabase Auth (GoTrue) session kept in `state.db`, and the
//!   engine's [`TokenProvider`](crate::TokenProvider).
//! - [`SupabaseConfig`]: the project URL, its anon key, timeouts, retries.
//! - [`errors`]: how answers map into error classes and [`SyncError`](crate::SyncError).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use luma_store::{StateStore, Store};
//! use luma_sync::supabase::{SupabaseConfig, SupabaseRemote, SupabaseSession};
//! use luma_sync::{SyncConfig, SyncEngine};
//! use secrecy::SecretString;
//!
//! let config = SupabaseConfig::new("https://abcd.supabase.co", "anon-key");
//! let remote = SupabaseRemote::new(config)?;
//! let session = Arc::new(SupabaseSession::for_remote(&remote, StateStore::open("state.db").await?).await?);
//! let user = session.sign_in("me@example.com", &SecretString::from("password")).await?;
//! let store = Store::open("luma.db").await?;
//! store.set_current_user(Some(user)).await?;
//! let engine = SyncEngine::new(store, remote, session, SyncConfig::default());
//! engine.sync_now().await?;
//! # Ok(()) }
//! ```

mod config;
pub mod errors;
mod http;
mod remote;
mod session;

pub use config::{RetryPolicy, SupabaseConfig};
pub use errors::{ErrorClass, HttpError};
pub use remote::SupabaseRemote;
pub use session::{AuthError, SupabaseSession};

impl SupabaseRemote {
    pub(crate) fn api(&self) -> &http::Api {
        &self.api
    }
}
