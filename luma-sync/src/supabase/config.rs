//! [`SupabaseConfig`]: where the project is, its key, timeouts and retries.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;

/// Bounded retries inside one HTTP request (5xx, 429, network errors, timeouts), with
/// exponential backoff and jitter; a `Retry-After` answer lengthens the wait.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: none).
    pub max_retries: usize,
    /// Delay before the first retry.
    pub min_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured in the request: a longer one ends the request with a
    /// transient error at once, and the engine's own backoff takes over.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// How to reach a Supabase project. `Debug` never shows the key.
///
/// The key is the project's **anon** (or `sb_publishable_...`) key: it is public by design and
/// row-level security decides what each signed-in user may do. The `service_role` (or
/// `sb_secret_...`) key bypasses row-level security and must never be shipped in the app.
///
/// ```
/// use std::time::Duration;
/// use luma_sync::supabase::SupabaseConfig;
///
/// let mut config = SupabaseConfig::new("https://abcd.supabase.co", "anon-key");
/// config.request_timeout = Duration::from_secs(20);
/// assert!(!format!("{config:?}").contains("anon-key"));
/// ```
#[derive(Clone)]
pub struct SupabaseConfig {
    /// The project URL, for example `https://<ref>.supabase.co` (no trailing slash needed).
    pub url: String,
    /// The anon (publishable) key, sent as `apikey` on every request.
    pub anon_key: SecretString,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one whole attempt (connect, send, read the answer).
    pub request_timeout: Duration,
    /// In-request retries.
    pub retry: RetryPolicy,
    /// The session refreshes its access token this long before it expires.
    pub refresh_margin: Duration,
    /// Sent as `X-Client-Info`.
    pub client_info: String,
}

impl SupabaseConfig {
    /// A configuration with default timeouts (connect 5 s, request 30 s), retries and
    /// refresh margin (90 s).
    pub fn new(url: impl Into<String>, anon_key: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            anon_key: SecretString::from(anon_key.into()),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            refresh_margin: Duration::from_secs(90),
            client_info: format!("luma/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl fmt::Debug for SupabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupabaseConfig")
            .field("url", &self.url)
            .field("anon_key", &"[redacted]")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .field("refresh_margin", &self.refresh_margin)
            .field("client_info", &self.client_info)
            .finish()
    }
}
