//! The HTTP client shared by [`SupabaseRemote`](super::SupabaseRemote) and
//! [`SupabaseSession`](super::SupabaseSession): one reqwest `Client` (rustls, gzip, connect
//! and request timeouts), the headers every call carries, and bounded retries with `backon`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, StatusCode};
use secrecy::ExposeSecret;
use serde_json::Value;

use super::config::SupabaseConfig;
use super::errors::HttpError;

/// A successful answer: status and body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: bytes_body::Body,
}

/// The raw body of an answer (kept out of `Debug`: it may hold tokens).
pub(crate) mod bytes_body {
    /// Bytes whose `Debug` shows only their length.
    pub(crate) struct Body(pub(crate) Vec<u8>);
    impl std::fmt::Debug for Body {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Body({} bytes)", self.0.len())
        }
    }
}

impl Answer {
    /// The body as `T`, or [`HttpError::Malformed`].
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body.0).map_err(|source| HttpError::Malformed {
            status: self.status.as_u16(),
            what: what.to_owned(),
            source,
        })
    }
}

/// The shared client. Cheap to clone (the reqwest client and the config are shared).
#[derive(Clone)]
pub(crate) struct Api {
    client: Client,
    config: Arc<SupabaseConfig>,
    base: String,
}

impl Api {
    /// A client for `config`.
    pub(crate) fn new(config: SupabaseConfig) -> Result<Self, HttpError> {
        let base = config.url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base).map_err(|e| HttpError::Request {
            message: format!("the project URL does not parse: {e}"),
        })?;
        let client = Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .gzip(true)
            .build()
            .map_err(|e| HttpError::Request {
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            client,
            config: Arc::new(config),
            base,
        })
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &SupabaseConfig {
        &self.config
    }

    /// The headers of every call: `apikey`, `X-Client-Info`, JSON in and out, and the bearer
    /// if any. Secret values are marked sensitive (hidden from `Debug` of the request).
    fn headers(&self, bearer: Option<&str>) -> Result<HeaderMap, HttpError> {
        let secret = |v: &str| {
            let mut h = HeaderValue::from_str(v).map_err(|_| HttpError::Request {
                message: "a key or token holds characters not allowed in a header".into(),
            })?;
            h.set_sensitive(true);
            Ok::<_, HttpError>(h)
        };
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static("apikey"),
            secret(self.config.anon_key.expose_secret())?,
        );
        if let Some(token) = bearer {
            h.insert(AUTHORIZATION, secret(&format!("Bearer {token}"))?);
        }
        h.insert(
            HeaderName::from_static("x-client-info"),
            HeaderValue::from_str(&self.config.client_info).map_err(|_| HttpError::Request {
                message: "client_info is not a valid header value".into(),
            })?,
        );
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        Ok(h)
    }

    /// One attempt: `POST {url}{path}?{query}` with `body`; an error status is an
    /// [`HttpError::Api`].
    async fn attempt(
        &self,
        path: &str,
        query: &[(&str, &str)],
        bearer: Option<&str>,
        body: &Value,
    ) -> Result<Answer, HttpError> {
        let url = format!("{}{}", self.base, path);
        let response = self
            .client
            .post(url)
            .query(query)
            .headers(self.headers(bearer)?)
            .json(body)
            .send()
            .await
            .map_err(HttpError::network)?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(HttpError::network)?;
        if status.is_success() {
            Ok(Answer {
                status,
                body: bytes_body::Body(bytes.to_vec()),
            })
        } else {
            Err(HttpError::from_answer(status, &headers, &bytes))
        }
    }

    /// `POST` with bounded retries of transient failures (5xx, 429, network, timeout):
    /// exponential backoff with jitter, lengthened to the server's `Retry-After`; a
    /// `Retry-After` beyond [`RetryPolicy::max_retry_after`](super::RetryPolicy) ends the
    /// retries. Every call the remote and the session make is idempotent (push resends are
    /// answered `applied`; GoTrue tolerates a refresh token reused within its reuse interval),
    /// so a retry after a lost answer is safe.
    pub(crate) async fn post(
        &self,
        what: &'static str,
        path: &str,
        query: &[(&str, &str)],
        bearer: Option<&str>,
        body: &Value,
    ) -> Result<Answer, HttpError> {
        let policy = &self.config.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_max_times(policy.max_retries)
            .with_jitter();
        let max_retry_after = policy.max_retry_after;
        let started = Instant::now();
        let result = (|| self.attempt(path, query, bearer, body))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(HttpError::is_retryable)
            .adjust(move |e: &HttpError, delay: Option<Duration>| {
                let delay = delay?;
                match e.retry_after() {
                    Some(after) if after > max_retry_after => None,
                    Some(after) => Some(after.max(delay)),
                    None => Some(delay),
                }
            })
            .notify(|e: &HttpError, delay: Duration| {
                tracing::debug!(call = what, error = %e, delay_ms = delay.as_millis() as u64, "retrying");
            })
            .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(a) => tracing::debug!(call = what, status = a.status.as_u16(), elapsed_ms, "done"),
            Err(e) => tracing::debug!(call = what, error = %e, elapsed_ms, "failed"),
        }
        result
    }
}
