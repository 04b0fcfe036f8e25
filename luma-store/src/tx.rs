//! Multi-record write transactions.

use luma_model::{Record, RecordKey};
use sqlx::{Sqlite, Transaction};

use crate::error::{Result, StoreError};
use crate::repo;
use crate::store::Store;

/// A write transaction over several records and tables: all of it commits, or none of it
/// (dropping it without [`StoreTx::commit`] rolls back). Pending ops of its writes commit with
/// it.
///
/// Holding a `StoreTx` holds the store's write lock: keep it short.
pub struct StoreTx {
    tx: Transaction<'static, Sqlite>,
    store: Store,
}

impl Store {
    /// Starts a write transaction.
    pub async fn transaction(&self) -> Result<StoreTx> {
        Ok(StoreTx {
            tx: self.begin_write().await?,
            store: self.clone(),
        })
    }

    pub(crate) async fn write_conn(&self) -> Result<sqlx::pool::PoolConnection<Sqlite>> {
        self.inner
            .writer
            .acquire()
            .await
            .map_err(StoreError::sql("waiting for the writer connection"))
    }
}

impl StoreTx {
    /// Inserts a record.
    pub async fn create<T: Record>(&mut self, record: &T) -> Result<()> {
        let sql = self.store.table(T::SPEC.name)?;
        repo::insert(&self.store, &mut self.tx, &sql, record).await
    }

    /// Inserts many records.
    pub async fn create_many<T: Record>(&mut self, records: &[T]) -> Result<usize> {
        let sql = self.store.table(T::SPEC.name)?;
        repo::insert_many(&self.store, &mut self.tx, &sql, records).await
    }

    /// Inserts or replaces a record.
    pub async fn upsert<T: Record>(&mut self, record: &T) -> Result<()> {
        let sql = self.store.table(T::SPEC.name)?;
        repo::upsert(&self.store, &mut self.tx, &sql, record).await
    }

    /// Replaces an existing record.
    pub async fn update<T: Record>(&mut self, record: &T) -> Result<()> {
        let sql = self.store.table(T::SPEC.name)?;
        repo::update(&self.store, &mut self.tx, &sql, record).await
    }

    /// Deletes a record (and its children).
    pub async fn delete<T: Record>(&mut self, key: impl Into<RecordKey>) -> Result<bool> {
        let sql = self.store.table(T::SPEC.name)?;
        repo::delete(&mut self.tx, &sql, &key.into()).await
    }

    /// Deletes every record of `T` whose `column` equals `value`.
    pub async fn delete_where<T: Record>(
        &mut self,
        column: &str,
        value: impl ToString,
    ) -> Result<u64> {
        if T::SPEC.column(column).is_none() {
            return Err(StoreError::Plugin {
                table: T::SPEC.name.into(),
                message: format!("no column {column}"),
            });
        }
        repo::delete_where(&mut self.tx, &T::SPEC, column, &value.to_string()).await
    }

    /// The underlying connection, for SQL of the caller's own (plugin tables).
    pub fn connection(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.tx
    }

    /// Commits everything.
    pub async fn commit(self) -> Result<()> {
        self.tx
            .commit()
            .await
            .map_err(StoreError::sql("committing a transaction"))?;
        self.store.notify_change();
        Ok(())
    }

    /// Rolls everything back.
    pub async fn rollback(self) -> Result<()> {
        self.tx
            .rollback()
            .await
            .map_err(StoreError::sql("rolling back a transaction"))
    }
}
