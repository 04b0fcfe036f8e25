//! Supabase Storage's REST API as a [`BlobStore`] (reqwest, rustls).

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use luma_store::{ExposeSecret, SecretString};
use reqwest::StatusCode;

use crate::blob::{BlobMeta, BlobStore, ByteStream, GetResult, PutMode, PutOptions, PutOutcome};
use crate::error::BlobError;
use crate::hash::validate_key;

const BACKEND: &str = "supabase";

/// How to reach a Supabase project's Storage.
#[derive(Clone)]
pub struct SupabaseStorageConfig {
    /// The project URL, e.g. `https://<ref>.supabase.co` (no trailing `/storage/v1`).
    pub url: String,
    /// The bucket.
    pub bucket: String,
    /// The project key, sent as `apikey` on every request.
    pub api_key: SecretString,
}

impl std::fmt::Debug for SupabaseStorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupabaseStorageConfig")
            .field("url", &self.url)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// Supabase Storage over REST:
/// `POST /storage/v1/object/<bucket>/<key>` (raw body, `Content-Type`, `x-upsert`),
/// `GET /storage/v1/object/<bucket>/<key>`, `GET /storage/v1/object/info/<bucket>/<key>`,
/// `DELETE /storage/v1/object/<bucket>` with `{"prefixes": [key]}`.
///
/// Every request carries `apikey`; `Authorization: Bearer` is the user's access token (set
/// with [`SupabaseBlobStore::set_access_token`]) or, without a session, the project key when
/// it is a legacy JWT key (new `sb_...` keys are not JWTs and go in `apikey` only).
///
/// "Already exists" is recognised in both shapes servers use: HTTP 409, and HTTP 400 with
/// `"statusCode": "409"` in the JSON body. Missing objects likewise: 404, or 400 with
/// `"statusCode": "404"`. Uploads are streamed (chunked), never buffered whole.
#[derive(Clone)]
pub struct SupabaseBlobStore {
    http: reqwest::Client,
    base: String,
    bucket: String,
    api_key: SecretString,
    token: Arc<RwLock<Option<SecretString>>>,
}

impl std::fmt::Debug for SupabaseBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupabaseBlobStore")
            .field("base", &self.base)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl SupabaseBlobStore {
    /// A client for this project and bucket.
    pub fn new(config: SupabaseStorageConfig) -> Result<Self, BlobError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .build()
            .map_err(|e| BlobError::Transport {
                backend: BACKEND,
                key: String::new(),
                source: Box::new(e),
            })?;
        Self::with_client(http, config)
    }

    /// [`SupabaseBlobStore::new`] with a caller-built client.
    pub fn with_client(
        http: reqwest::Client,
        config: SupabaseStorageConfig,
    ) -> Result<Self, BlobError> {
        validate_key(&config.bucket)?;
        if config.bucket.contains('/') {
            return Err(BlobError::InvalidKey {
                key: config.bucket,
                reason: "a bucket name has no '/'",
            });
        }
        Ok(Self {
            http,
            base: format!("{}/storage/v1", config.url.trim_end_matches('/')),
            bucket: config.bucket,
            api_key: config.api_key,
            token: Arc::new(RwLock::new(None)),
        })
    }

    /// Sets (or clears) the signed-in user's access token used as the bearer.
    pub fn set_access_token(&self, token: Option<SecretString>) {
        if let Ok(mut t) = self.token.write() {
            *t = token;
        }
    }

    fn bearer(&self) -> Option<String> {
        if let Ok(t) = self.token.read() {
            if let Some(t) = t.as_ref() {
                return Some(t.expose_secret().to_string());
            }
        }
        let key = self.api_key.expose_secret();
        // Legacy keys are JWTs (three dot-separated parts); new sb_ keys go in apikey only.
        (key.split('.').count() == 3 && !key.starts_with("sb_")).then(|| key.to_string())
    }

    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, url)
            .header("apikey", self.api_key.expose_secret())
            .header("X-Client-Info", concat!("luma/", env!("CARGO_PKG_VERSION")));
        if let Some(b) = self.bearer() {
            r = r.bearer_auth(b);
        }
        r
    }

    fn object_url(&self, key: &str) -> String {
        format!("{}/object/{}/{}", self.base, self.bucket, key)
    }

    fn transport(key: &str) -> impl FnOnce(reqwest::Error) -> BlobError + '_ {
        move |e| BlobError::Transport {
            backend: BACKEND,
            key: key.into(),
            source: Box::new(e),
        }
    }
}

/// An error answer: its status, the `statusCode` of the JSON body if any, and the message.
struct Answer {
    status: u16,
    body_code: Option<String>,
    message: String,
}

impl Answer {
    async fn read(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        let body_code = json.as_ref().and_then(|j| match j.get("statusCode") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        });
        let message = json
            .as_ref()
            .and_then(|j| {
                j.get("message")
                    .or_else(|| j.get("error"))
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| text.chars().take(200).collect());
        Answer {
            status,
            body_code,
            message,
        }
    }

    fn means(&self, code: u16) -> bool {
        self.status == code
            || (self.status == 400 && self.body_code.as_deref() == Some(&code.to_string()))
    }

    fn into_error(self, key: &str) -> BlobError {
        if self.means(404) {
            return BlobError::NotFound { key: key.into() };
        }
        BlobError::Http {
            backend: BACKEND,
            key: key.into(),
            status: self.status,
            message: self.message,
        }
    }
}

#[async_trait]
impl BlobStore for SupabaseBlobStore {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn put(
        &self,
        key: &str,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<PutOutcome, BlobError> {
        validate_key(key)?;
        let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = counted.clone();
        let body = body.inspect_ok(move |b| {
            c.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
        });
        let upsert = options.mode == PutMode::Overwrite;
        let resp = self
            .request(reqwest::Method::POST, self.object_url(key))
            .header("x-upsert", if upsert { "true" } else { "false" })
            .header(
                reqwest::header::CONTENT_TYPE,
                options
                    .content_type
                    .as_deref()
                    .unwrap_or("application/octet-stream"),
            )
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(Self::transport(key))?;
        if resp.status().is_success() {
            return Ok(PutOutcome::Stored {
                size: counted.load(std::sync::atomic::Ordering::Relaxed),
            });
        }
        let answer = Answer::read(resp).await;
        if answer.means(409) && !upsert {
            return Ok(PutOutcome::AlreadyExists);
        }
        tracing::debug!(
            key,
            status = answer.status,
            "supabase storage refused an upload"
        );
        Err(answer.into_error(key))
    }

    async fn get(&self, key: &str) -> Result<GetResult, BlobError> {
        validate_key(key)?;
        let resp = self
            .request(reqwest::Method::GET, self.object_url(key))
            .send()
            .await
            .map_err(Self::transport(key))?;
        if !resp.status().is_success() {
            return Err(Answer::read(resp).await.into_error(key));
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let size = resp.content_length().unwrap_or(0);
        let owned = key.to_string();
        let stream = resp
            .bytes_stream()
            .map_err(move |e| BlobError::Transport {
                backend: BACKEND,
                key: owned.clone(),
                source: Box::new(e),
            })
            .boxed();
        Ok(GetResult {
            meta: BlobMeta {
                key: key.into(),
                size,
                content_type,
            },
            stream,
        })
    }

    async fn head(&self, key: &str) -> Result<BlobMeta, BlobError> {
        validate_key(key)?;
        let url = format!("{}/object/info/{}/{}", self.base, self.bucket, key);
        let resp = self
            .request(reqwest::Method::GET, url)
            .send()
            .await
            .map_err(Self::transport(key))?;
        if !resp.status().is_success() {
            return Err(Answer::read(resp).await.into_error(key));
        }
        let info: serde_json::Value = resp.json().await.map_err(Self::transport(key))?;
        let size = info
            .get("size")
            .or_else(|| info.pointer("/metadata/size"))
            .or_else(|| info.pointer("/metadata/contentLength"))
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        let content_type = info
            .get("content_type")
            .or_else(|| info.pointer("/metadata/mimetype"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        Ok(BlobMeta {
            key: key.into(),
            size,
            content_type,
        })
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        let url = format!("{}/object/{}", self.base, self.bucket);
        let resp = self
            .request(reqwest::Method::DELETE, url)
            .json(&serde_json::json!({ "prefixes": [key] }))
            .send()
            .await
            .map_err(Self::transport(key))?;
        if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        let answer = Answer::read(resp).await;
        if answer.means(404) {
            return Ok(());
        }
        Err(answer.into_error(key))
    }
}
