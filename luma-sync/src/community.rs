//! Community patterns on the client: remote search, the same tabs offline, and importing a
//! community pattern into the user's library.
//!
//! An import writes a copy through the [`Store`] (new ids, `forked_from_id` set, the importer as
//! owner, unpublished), so it syncs to the importer's other devices like any local write.

use std::sync::Arc;

use luma_model::{
    Implementation, ImplementationId, Pattern, PatternFilter, PatternId, PatternTab, Record, UserId,
};
use luma_store::Store;

use crate::engine::SyncEngine;
use crate::error::{Result, SyncError};
use crate::remote::{PatternBundle, Remote, SearchPage, SearchRequest};
use crate::token::AccessToken;

impl<R: Remote> SyncEngine<Store, R> {
    /// One page of a community search through the remote ([`Remote::search_patterns`]). After a
    /// refused token the token is refreshed once and the call retried.
    pub async fn search_patterns(&self, request: &SearchRequest) -> Result<SearchPage> {
        self.with_token(|token| async move { self.remote().search_patterns(&token, request).await })
            .await
    }

    /// The same tab over the patterns already synced to this device (works offline), for the
    /// signed-in user of the store; same filter and order as the remote search, unpaged.
    pub async fn search_local(
        &self,
        tab: PatternTab,
        filter: &PatternFilter,
    ) -> Result<Vec<Pattern>> {
        let user = self.local().current_user().await?;
        Ok(self.local().patterns().search(tab, user, filter).await?)
    }

    /// Imports a pattern the user may read (typically a community pattern) into the user's
    /// library: fetched from the remote, or, when the remote cannot be reached or does not
    /// support fetching, from this device's synced copy. Returns the new pattern.
    ///
    /// Errors: [`SyncError::NotFound`] when neither the remote nor this device has a live,
    /// readable pattern with this id.
    pub async fn import_pattern(&self, pattern: PatternId) -> Result<Pattern> {
        let token = self.tokens().token().await?;
        let owner = token.user();
        let fetched = self
            .with_token(|token| async move { self.remote().fetch_pattern(&token, pattern).await })
            .await;
        let bundle = match fetched {
            Ok(Some(bundle)) => bundle,
            Ok(None) => return Err(not_found(pattern)),
            Err(e) if e.is_retryable() || matches!(e, SyncError::Unsupported { .. }) => {
                tracing::info!(%pattern, error = %e, "importing from the local copy");
                local_bundle(self.local(), pattern).await?.ok_or(e)?
            }
            Err(e) => return Err(e),
        };
        import_bundle(self.local(), owner, &bundle).await
    }

    /// Runs `call` with the current token; after a 401, refreshes it once and runs it again.
    async fn with_token<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(Arc<AccessToken>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let token = self.tokens().token().await?;
        match call(token.clone()).await {
            Err(e) if e.is_unauthorized() => {
                tracing::info!("token refused, refreshing once");
                let fresh = self.tokens().refresh_after(&token).await?;
                call(fresh).await
            }
            other => other,
        }
    }
}

fn not_found(pattern: PatternId) -> SyncError {
    SyncError::NotFound {
        table: Pattern::SPEC.name,
        key: pattern.to_string(),
    }
}

/// The synced copy of a pattern and its implementations on this device, if any.
async fn local_bundle(store: &Store, pattern: PatternId) -> Result<Option<PatternBundle>> {
    let Some(p) = store.patterns().find(pattern).await? else {
        return Ok(None);
    };
    let implementations = store
        .implementations()
        .list_by_pattern(pattern)
        .await?
        .iter()
        .map(Record::to_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SyncError::Store { source: e.into() })?;
    Ok(Some(PatternBundle {
        pattern: p
            .to_row()
            .map_err(|e| SyncError::Store { source: e.into() })?,
        implementations,
    }))
}

/// Writes a copy of `bundle` into `store` as `owner`'s new pattern, in one transaction: new
/// pattern and implementation ids, `forked_from_id` = the source pattern, `owner` as `uid`,
/// unpublished, no author name (search shows the owner's profile name), fresh timestamps.
/// Returns the new pattern.
pub async fn import_bundle(
    store: &Store,
    owner: UserId,
    bundle: &PatternBundle,
) -> Result<Pattern> {
    let protocol = |what: &str, e: luma_model::RowError| {
        SyncError::protocol(format!("undecodable {what} in a fetched pattern: {e}"))
    };
    let source = Pattern::from_row(bundle.pattern.clone()).map_err(|e| protocol("pattern", e))?;
    let now = luma_model::now();
    let copy = Pattern {
        id: PatternId::new(),
        uid: Some(owner),
        name: source.name,
        description: source.description,
        category: source.category,
        is_verified: false,
        author_name: None,
        forked_from_id: Some(source.id),
        created_at: now,
        updated_at: now,
    };
    let implementations = bundle
        .implementations
        .iter()
        .map(|row| {
            let i =
                Implementation::from_row(row.clone()).map_err(|e| protocol("implementation", e))?;
            Ok(Implementation {
                id: ImplementationId::new(),
                pattern_id: copy.id,
                ..i
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut tx = store.transaction().await?;
    tx.create(&copy).await?;
    tx.create_many(&implementations).await?;
    tx.commit().await?;
    tracing::debug!(source = %source.id, copy = %copy.id, implementations = implementations.len(), "pattern imported");
    Ok(copy)
}
