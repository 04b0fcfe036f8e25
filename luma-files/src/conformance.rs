//! One conformance suite for every [`BlobStore`] (in the style of `object_store`'s
//! `integration.rs`): plain `pub async fn check_*` functions that a backend's tests call, each
//! returning a [`CheckFailure`] that says which promise of the contract was broken.
//!
//! `prefix` isolates runs sharing one bucket: use a fresh value per run.

use bytes::Bytes;
use futures::StreamExt;

use crate::blob::{BlobStore, BlobStoreExt, ByteStream, PutMode, PutOptions, PutOutcome};
use crate::error::BlobError;
use crate::hash::{BlobKey, HashAlgo};

/// A broken promise of the [`BlobStore`] contract.
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {check}: {message}")]
pub struct CheckFailure {
    /// Backend name.
    pub backend: &'static str,
    /// Which check.
    pub check: &'static str,
    /// What went wrong.
    pub message: String,
}

type Check = Result<(), CheckFailure>;

struct Ctx<'a> {
    store: &'a dyn BlobStore,
    check: &'static str,
}

impl Ctx<'_> {
    fn fail(&self, message: impl Into<String>) -> CheckFailure {
        CheckFailure {
            backend: self.store.name(),
            check: self.check,
            message: message.into(),
        }
    }

    fn ok<T>(&self, what: &str, r: Result<T, BlobError>) -> Result<T, CheckFailure> {
        r.map_err(|e| self.fail(format!("{what}: unexpected error: {e}")))
    }

    fn ensure(&self, cond: bool, message: impl FnOnce() -> String) -> Check {
        if cond {
            Ok(())
        } else {
            Err(self.fail(message()))
        }
    }
}

/// Deterministic test bytes.
pub fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect::<Vec<u8>>()
        .into()
}

/// A body of `data` in chunks of `chunk` bytes.
pub fn chunked(data: Bytes, chunk: usize) -> ByteStream {
    let chunk = chunk.max(1);
    let parts: Vec<Result<Bytes, BlobError>> = (0..data.len())
        .step_by(chunk)
        .map(|i| Ok(data.slice(i..(i + chunk).min(data.len()))))
        .collect();
    futures::stream::iter(parts).boxed()
}

/// A body that yields `data` and then breaks off with an error.
pub fn breaking(data: Bytes, chunk: usize) -> ByteStream {
    chunked(data, chunk)
        .chain(futures::stream::iter([Err(BlobError::Injected {
            key: String::new(),
            message: "the body broke off".into(),
            retryable: true,
        })]))
        .boxed()
}

fn overwrite() -> PutOptions {
    PutOptions {
        mode: PutMode::Overwrite,
        ..PutOptions::default()
    }
}

/// Bodies of several sizes (empty, one byte, many chunks) come back identical; head reports
/// their size.
pub async fn check_round_trip(store: &dyn BlobStore, prefix: &str) -> Check {
    let c = Ctx {
        store,
        check: "round_trip",
    };
    for (i, len) in [0usize, 1, 1000, 300_000].into_iter().enumerate() {
        let key = format!("{prefix}/rt/{i}");
        let data = pattern(len, i as u8);
        let out = c.ok(
            "put",
            store
                .put(&key, chunked(data.clone(), 64 * 1024), overwrite())
                .await,
        )?;
        c.ensure(out == PutOutcome::Stored { size: len as u64 }, || {
            format!("put of {len} bytes answered {out:?}")
        })?;
        let back = c.ok("get", store.get_bytes(&key).await)?;
        c.ensure(back == data, || {
            format!("{len} bytes came back as {} different bytes", back.len())
        })?;
        let meta = c.ok("head", store.head(&key).await)?;
        c.ensure(meta.size == len as u64, || {
            format!("head says {} bytes for {len}", meta.size)
        })?;
    }
    Ok(())
}

/// A body larger than one multipart part (12 MiB in 64 KiB chunks) round-trips.
pub async fn check_large_streamed(store: &dyn BlobStore, prefix: &str) -> Check {
    let c = Ctx {
        store,
        check: "large_streamed",
    };
    let key = format!("{prefix}/large");
    let data = pattern(12 * 1024 * 1024 + 123, 7);
    c.ok(
        "put",
        store
            .put(&key, chunked(data.clone(), 64 * 1024), overwrite())
            .await,
    )?;
    let expected = BlobKey::of(HashAlgo::Blake3, &data);
    let mut got = c.ok("get", store.get(&key).await)?;
    let mut h = HashAlgo::Blake3.hasher();
    let mut n = 0usize;
    while let Some(chunk) = got.stream.next().await {
        let chunk = c.ok("reading the stream", chunk)?;
        n += chunk.len();
        h.update(&chunk);
    }
    c.ensure(n == data.len() && h.finish() == expected, || {
        format!("read {n} bytes of {}, or the content differs", data.len())
    })?;
    c.ok("delete", store.delete(&key).await)
}

/// A missing key is `NotFound` (not retryable) for get and head.
pub async fn check_not_found(store: &dyn BlobStore, prefix: &str) -> Check {
    let c = Ctx {
        store,
        check: "not_found",
    };
    let key = format!("{prefix}/missing/nothing-here");
    match store.get(&key).await {
        Err(e) if e.is_not_found() && !e.is_retryable() => {}
        Err(e) => return Err(c.fail(format!("get of a missing key: {e}"))),
        Ok(_) => return Err(c.fail("get of a missing key succeeded")),
    }
    match store.head(&key).await {
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(c.fail(format!("head of a missing key: {e}"))),
        Ok(m) => Err(c.fail(format!("head of a missing key answered {m:?}"))),
    }
}

/// `IfAbsent` on an existing key writes nothing and answers `AlreadyExists`; `Overwrite`
/// replaces.
pub async fn check_if_absent_and_overwrite(store: &dyn BlobStore, prefix: &str) -> Check {
    let c = Ctx {
        store,
        check: "if_absent_and_overwrite",
    };
    let key = format!("{prefix}/modes");
    let a = Bytes::from_static(b"first version");
    let b = Bytes::from_static(b"second version, longer");
    let first = c.ok(
        "first put",
        store
            .put_bytes(&key, a.clone(), PutOptions::if_absent(None))
            .await,
    )?;
    c.ensure(matches!(first, PutOutcome::Stored { .. }), || {
        format!("first IfAbsent put answered {first:?}")
    })?;
    let second = c.ok(
        "second put",
        store
            .put_bytes(&key, b.clone(), PutOptions::if_absent(None))
            .await,
    )?;
    c.ensure(second == PutOutcome::AlreadyExists, || {
        format!("IfAbsent on an existing key answered {second:?}")
    })?;
    let now = c.ok("get", store.get_bytes(&key).await)?;
    c.ensure(now == a, || "IfAbsent replaced the existing blob".into())?;
    c.ok(
        "overwrite",
        store.put_bytes(&key, b.clone(), overwrite()).await,
    )?;
    let now = c.ok("get", store.get_bytes(&key).await)?;
    c.ensure(now == b, || "Overwrite did not replace the blob".into())
}

/// A body that breaks off half-way leaves nothing under a new key and the old blob under an
/// existing one (puts are atomic).
pub async fn check_atomic_put(store: &dyn BlobStore, prefix: &str) -> Check {
    let c = Ctx {
        store,
        check: "atomic_put",
    };
    for (i, len) in [100_000usize, 9 * 1024 * 1024].into_iter().enumerate() {
        let key = format!("{prefix}/atomic/{i}");
        let r = store
            .put(&key, breaking(pattern(len, 3), 64 * 1024), overwrite())
            .await;
        c.ensure(r.is_err(), || "a put whose body failed succeeded".into())?;
        match store.head(&key).await {
            Err(e) if e.is_not_found() => {}
            other => {
                return Err(c.fail(format!(
                    "after a failed put of {len} bytes the key holds {other:?}"
                )))
            }
        }
        let old = Bytes::from_static(b"old content");
        c.ok("put", store.put_bytes(&key, old.clone(), overwrite()).await)?;
        let r = store
            .put(&key, breaking(pattern(len, 4), 64 * 1024), overwrite())
            .await;
        c.ensure(r.is_err(), || "a put whose body failed succeeded".into())?;
        let now = c.ok("get", store.get_bytes(&key).await)?;
        c.ensure(now == old, || {
            "a failed overwrite changed the existing blob".into()
        })?;
        c.ok("delete", store.delete(&key).await)?;
    }
    Ok(())
}

/// delete removes, and deleting a missing key succeeds.
pub async fn check_delete(store: &dyn BlobStore, prefix: &str) -> Check {
    let c = Ctx {
        store,
        check: "delete",
    };
    let key = format!("{prefix}/del");
    c.ok(
        "put",
        store
            .put_bytes(&key, Bytes::from_static(b"x"), overwrite())
            .await,
    )?;
    c.ok("delete", store.delete(&key).await)?;
    c.ensure(!c.ok("exists", store.exists(&key).await)?, || {
        "the blob is still there after delete".into()
    })?;
    c.ok("second delete", store.delete(&key).await)
}

/// Content-addressed puts: the key is `<algo>/<hex>`, identical content is stored once and a
/// re-upload is a no-op; the bytes verify against the key.
pub async fn check_content_addressed(store: &dyn BlobStore, prefix: &str) -> Check {
    let c = Ctx {
        store,
        check: "content_addressed",
    };
    let data = Bytes::from(format!("album art of run {prefix}").into_bytes());
    for algo in [HashAlgo::Blake3, HashAlgo::Sha256] {
        let (key, first) = c.ok(
            "put_content",
            store
                .put_content(algo, data.clone(), Some("image/png"))
                .await,
        )?;
        c.ensure(key.to_string().starts_with(algo.as_str()), || {
            format!("key {key} does not name its algorithm")
        })?;
        c.ensure(matches!(first, PutOutcome::Stored { .. }), || {
            format!("first put answered {first:?}")
        })?;
        let (key2, second) = c.ok(
            "put_content again",
            store
                .put_content(algo, data.clone(), Some("image/png"))
                .await,
        )?;
        c.ensure(key2 == key && second == PutOutcome::AlreadyExists, || {
            format!("a re-upload of identical content answered {second:?}")
        })?;
        let back = c.ok("get_verified", store.get_verified(&key).await)?;
        c.ensure(back == data, || "content differs".into())?;
        c.ok("delete", store.delete(&key.to_string()).await)?;
    }
    Ok(())
}

/// Invalid keys fail with `InvalidKey` before any IO.
pub async fn check_invalid_keys(store: &dyn BlobStore, _prefix: &str) -> Check {
    let c = Ctx {
        store,
        check: "invalid_keys",
    };
    for key in ["", "../escape", "a//b", "/abs", "sp ace", "a/./b"] {
        let put = store
            .put_bytes(key, Bytes::from_static(b"x"), overwrite())
            .await;
        c.ensure(matches!(put, Err(BlobError::InvalidKey { .. })), || {
            format!("put under {key:?} answered {put:?}")
        })?;
        let get = store.head(key).await;
        c.ensure(matches!(get, Err(BlobError::InvalidKey { .. })), || {
            format!("head of {key:?} answered {get:?}")
        })?;
    }
    Ok(())
}

/// Runs every check in order; stops at the first failure.
pub async fn check_all(store: &dyn BlobStore, prefix: &str) -> Check {
    check_round_trip(store, prefix).await?;
    check_not_found(store, prefix).await?;
    check_if_absent_and_overwrite(store, prefix).await?;
    check_atomic_put(store, prefix).await?;
    check_delete(store, prefix).await?;
    check_content_addressed(store, prefix).await?;
    check_invalid_keys(store, prefix).await?;
    check_large_streamed(store, prefix).await?;
    Ok(())
}
