//! An S3-compatible [`BlobStore`] through the `object_store` crate (AWS S3, MinIO, moto,
//! and Supabase Storage's S3 endpoint).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::BytesMut;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{Attribute, Attributes, ObjectStore, PutPayload, WriteMultipart};

use crate::blob::{BlobMeta, BlobStore, ByteStream, GetResult, PutMode, PutOptions, PutOutcome};
use crate::error::BlobError;
use crate::hash::validate_key;

/// The smallest part S3 accepts (except the last one).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// How to reach an S3-compatible server.
#[derive(Clone)]
pub struct S3Config {
    /// Endpoint URL (`http://127.0.0.1:9000`, `https://<project>.supabase.co/storage/v1/s3`);
    /// `None` for AWS.
    pub endpoint: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// Region (`us-east-1` for most compatible servers).
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: luma_store::SecretString,
    /// Session token (Supabase: the user's access token, so row-level security applies).
    pub session_token: Option<luma_store::SecretString>,
    /// Allow plain `http://` endpoints (local test servers).
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Blobs in an S3 bucket. Bodies up to one part size go up in one `PUT`; larger ones as a
/// multipart upload with a bounded number of parts in flight, so memory stays at about
/// `part_size * (max_in_flight + 1)`. A failed or dropped multipart upload is never completed
/// and so never visible.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    part_size: usize,
    max_in_flight: usize,
}

impl S3BlobStore {
    /// Wraps any `object_store` implementation.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            part_size: 8 * 1024 * 1024,
            max_in_flight: 2,
        }
    }

    /// Builds an S3 client (path-style requests, SigV4).
    pub fn from_config(config: &S3Config) -> Result<Self, BlobError> {
        use luma_store::ExposeSecret;
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(config.secret_access_key.expose_secret())
            .with_virtual_hosted_style_request(false)
            .with_allow_http(config.allow_http);
        if let Some(e) = &config.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(t) = &config.session_token {
            b = b.with_token(t.expose_secret());
        }
        let store = b.build().map_err(|source| BlobError::ObjectStore {
            key: String::new(),
            source,
        })?;
        Ok(Self::new(Arc::new(store)))
    }

    /// Sets the multipart part size (at least [`MIN_PART_SIZE`]).
    pub fn with_part_size(mut self, part_size: usize) -> Self {
        self.part_size = part_size.max(MIN_PART_SIZE);
        self
    }

    fn path(key: &str) -> Result<ObjPath, BlobError> {
        validate_key(key)?;
        ObjPath::parse(key).map_err(|_| BlobError::InvalidKey {
            key: key.into(),
            reason: "not a valid object path",
        })
    }
}

fn map_err(key: &str) -> impl FnOnce(object_store::Error) -> BlobError + '_ {
    move |source| match source {
        object_store::Error::NotFound { .. } => BlobError::NotFound { key: key.into() },
        source => BlobError::ObjectStore {
            key: key.into(),
            source,
        },
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    fn name(&self) -> &'static str {
        "s3"
    }

    async fn put(
        &self,
        key: &str,
        mut body: ByteStream,
        options: PutOptions,
    ) -> Result<PutOutcome, BlobError> {
        let path = Self::path(key)?;
        if options.mode == PutMode::IfAbsent {
            match self.store.head(&path).await {
                Ok(_) => return Ok(PutOutcome::AlreadyExists),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(map_err(key)(e)),
            }
        }
        let mut attributes = Attributes::new();
        if let Some(ct) = &options.content_type {
            attributes.insert(Attribute::ContentType, ct.clone().into());
        }
        // Read up to one part: small bodies go up in a single PUT.
        let mut first = BytesMut::new();
        let mut ended = true;
        while let Some(chunk) = body.next().await {
            first.extend_from_slice(&chunk?);
            if first.len() >= self.part_size {
                ended = false;
                break;
            }
        }
        if ended {
            let size = first.len() as u64;
            let opts = object_store::PutOptions {
                attributes,
                ..Default::default()
            };
            self.store
                .put_opts(&path, PutPayload::from(first.freeze()), opts)
                .await
                .map_err(map_err(key))?;
            return Ok(PutOutcome::Stored { size });
        }
        let opts = object_store::PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let upload = self
            .store
            .put_multipart_opts(&path, opts)
            .await
            .map_err(map_err(key))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut size = first.len() as u64;
        writer.write(&first);
        drop(first);
        loop {
            let next = body.next().await;
            let chunk = match next {
                None => break,
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            };
            if let Err(e) = writer.wait_for_capacity(self.max_in_flight).await {
                let _ = writer.abort().await;
                return Err(map_err(key)(e));
            }
            size += chunk.len() as u64;
            writer.write(&chunk);
        }
        writer.finish().await.map_err(map_err(key))?;
        Ok(PutOutcome::Stored { size })
    }

    async fn get(&self, key: &str) -> Result<GetResult, BlobError> {
        let path = Self::path(key)?;
        let got = self.store.get(&path).await.map_err(map_err(key))?;
        let content_type = got
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.to_string());
        let meta = BlobMeta {
            key: key.into(),
            size: got.meta.size,
            content_type,
        };
        let owned = key.to_string();
        let stream = got
            .into_stream()
            .map_err(move |source| BlobError::ObjectStore {
                key: owned.clone(),
                source,
            })
            .boxed();
        Ok(GetResult { meta, stream })
    }

    async fn head(&self, key: &str) -> Result<BlobMeta, BlobError> {
        let path = Self::path(key)?;
        let meta = self.store.head(&path).await.map_err(map_err(key))?;
        Ok(BlobMeta {
            key: key.into(),
            size: meta.size,
            content_type: None,
        })
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = Self::path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err(key)(e)),
        }
    }
}
