//! The settings key-value API (local only, never synced).

use luma_model::Setting;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::store::Store;

/// Device settings. Get them with [`Store::settings`].
pub struct Settings<'s> {
    store: &'s Store,
}

impl Store {
    /// The settings.
    pub fn settings(&self) -> Settings<'_> {
        Settings { store: self }
    }
}

impl Settings<'_> {
    /// The value of `key` decoded as `T`, `None` if unset.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(setting) = self
            .store
            .repo::<Setting>()
            .find(luma_model::RecordKey::single(key))
            .await?
        else {
            return Ok(None);
        };
        serde_json::from_value(setting.value)
            .map(Some)
            .map_err(|source| StoreError::Row {
                source: luma_model::RowError::Decode {
                    table: "settings",
                    source,
                },
            })
    }

    /// Sets `key` to `value`.
    pub async fn set<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let value = serde_json::to_value(value).map_err(|source| StoreError::Row {
            source: luma_model::RowError::Encode {
                table: "settings",
                source,
            },
        })?;
        self.store
            .repo::<Setting>()
            .upsert(&Setting {
                key: key.to_string(),
                value,
            })
            .await
    }

    /// Removes `key`. Returns false if it was not set.
    pub async fn remove(&self, key: &str) -> Result<bool> {
        self.store
            .repo::<Setting>()
            .delete(luma_model::RecordKey::single(key))
            .await
    }

    /// Every setting.
    pub async fn all(&self) -> Result<Vec<Setting>> {
        self.store.repo::<Setting>().list().await
    }
}
