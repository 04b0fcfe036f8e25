//! Generic typed repositories: create / get / list / update / delete for any [`Record`].

use std::marker::PhantomData;

use luma_model::{Record, RecordKey, TableSpec};
use sqlx::{Row as _, SqliteConnection};

use crate::bind::{bind_key_parts, SqliteQuery};
use crate::error::{Result, StoreError};
use crate::record_bind::RecordValues;
use crate::schema::{quote, read_row, TableSql};
use crate::store::Store;

/// Rows per statement of the bulk paths, at most.
pub(crate) const BULK_CHUNK: usize = 500;

/// Bound parameters per statement we allow ourselves (SQLite's limit is 32,766).
const MAX_PARAMS: usize = 32_000;

/// The typed repository of one table. Get one with [`Store::repo`] or a named accessor such as
/// [`Store::fixtures`].
///
/// Every write validates the record first and writes nothing if it is invalid; a write to a
/// synced table records its pending op in the same transaction (by trigger).
pub struct Repo<'s, T> {
    store: &'s Store,
    _record: PhantomData<fn() -> T>,
}

impl<'s, T: Record> Repo<'s, T> {
    pub(crate) fn new(store: &'s Store) -> Self {
        Self {
            store,
            _record: PhantomData,
        }
    }

    fn sql(&self) -> Result<std::sync::Arc<TableSql>> {
        self.store.table(T::SPEC.name)
    }

    /// Inserts a new record (fails with [`StoreError::Constraint`] if the key exists).
    pub async fn create(&self, record: &T) -> Result<()> {
        let sql = self.sql()?;
        let mut conn = self.store.write_conn().await?;
        insert(self.store, &mut conn, &sql, record).await?;
        self.store.notify_change();
        Ok(())
    }

    /// Inserts many records in one transaction (all or nothing). Much faster than one
    /// [`Repo::create`] per record: rows travel as JSON and are inserted by SQLite in chunks.
    pub async fn create_many(&self, records: &[T]) -> Result<usize> {
        let sql = self.sql()?;
        let mut tx = self.store.begin_write().await?;
        let n = insert_many(self.store, &mut tx, &sql, records).await?;
        tx.commit()
            .await
            .map_err(StoreError::sql("committing a bulk insert"))?;
        self.store.notify_change();
        Ok(n)
    }

    /// Inserts or replaces the record with this key.
    pub async fn upsert(&self, record: &T) -> Result<()> {
        let sql = self.sql()?;
        let mut conn = self.store.write_conn().await?;
        upsert(self.store, &mut conn, &sql, record).await?;
        self.store.notify_change();
        Ok(())
    }

    /// Replaces an existing record ([`StoreError::NotFound`] if there is none). Sets
    /// `updated_at` to now when the table has that column.
    pub async fn update(&self, record: &T) -> Result<()> {
        let sql = self.sql()?;
        let mut conn = self.store.write_conn().await?;
        update(self.store, &mut conn, &sql, record).await?;
        self.store.notify_change();
        Ok(())
    }

    /// Deletes the record with this key, and its children as the foreign keys say. Returns
    /// false if there was none.
    pub async fn delete(&self, key: impl Into<RecordKey>) -> Result<bool> {
        let sql = self.sql()?;
        let mut conn = self.store.write_conn().await?;
        let deleted = delete(&mut conn, &sql, &key.into()).await?;
        self.store.notify_change();
        Ok(deleted)
    }

    /// The record with this key ([`StoreError::NotFound`] if there is none).
    pub async fn get(&self, key: impl Into<RecordKey>) -> Result<T> {
        let key = key.into();
        self.find(key.clone()).await?.ok_or(StoreError::NotFound {
            table: T::SPEC.name,
            key: key.to_string(),
        })
    }

    /// The record with this key, if any.
    pub async fn find(&self, key: impl Into<RecordKey>) -> Result<Option<T>> {
        let sql = self.sql()?;
        let key = key.into();
        let text = format!(
            "SELECT {} FROM {} WHERE {}",
            sql.select_columns,
            quote(T::SPEC.name),
            sql.key_where
        );
        let q = bind_key_parts(sqlx::query(&text), &T::SPEC, key.parts())?;
        let row = q
            .fetch_optional(self.store.reader_pool())
            .await
            .map_err(StoreError::sql("reading a record"))?;
        row.map(|r| decode_row::<T>(&r)).transpose()
    }

    /// Every record of the table, in key order. A row that does not decode into `T` (for
    /// example a value written by another version of the app) is left out and logged
    /// (`tracing::warn!` with its table and key) instead of failing the whole list; use
    /// [`Repo::list_report`] to learn which rows were left out, and [`Repo::get`] to see why
    /// one does not decode.
    pub async fn list(&self) -> Result<Vec<T>> {
        self.select("", Vec::new()).await
    }

    /// [`Repo::list`], with the rows that do not decode reported instead of only logged.
    pub async fn list_report(&self) -> Result<ListReport<T>> {
        self.select_report("", Vec::new()).await
    }

    /// The records whose `column` equals `value`, in key order. The column must belong to the
    /// table ([`StoreError::Plugin`] otherwise).
    pub async fn list_by(&self, column: &str, value: impl ToString) -> Result<Vec<T>> {
        if T::SPEC.column(column).is_none() {
            return Err(StoreError::Plugin {
                table: T::SPEC.name.into(),
                message: format!("no column {column}"),
            });
        }
        self.select(
            &format!("WHERE {} = ?", quote(column)),
            vec![value.to_string()],
        )
        .await
    }

    /// How many records the table holds.
    pub async fn count(&self) -> Result<i64> {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {}", quote(T::SPEC.name)))
            .fetch_one(self.store.reader_pool())
            .await
            .map_err(StoreError::sql("counting records"))
    }

    /// The records matching `filter`, in key order; rows that do not decode are left out
    /// (and logged).
    pub(crate) async fn select(&self, filter: &str, params: Vec<String>) -> Result<Vec<T>> {
        Ok(self.select_report(filter, params).await?.records)
    }

    /// The records matching `filter`, in key order, and the rows that do not decode.
    pub(crate) async fn select_report(
        &self,
        filter: &str,
        params: Vec<String>,
    ) -> Result<ListReport<T>> {
        let sql = self.sql()?;
        let order = T::SPEC
            .key
            .iter()
            .map(|k| quote(k))
            .collect::<Vec<_>>()
            .join(", ");
        // The record key goes last (decoding reads the columns from index 0), so a row that
        // does not decode can still be named.
        let text = format!(
            "SELECT {}, {} AS \"$key\" FROM {} {filter} ORDER BY {order}",
            sql.select_columns,
            crate::schema::key_expr(&T::SPEC, &quote(T::SPEC.name)),
            quote(T::SPEC.name)
        );
        let mut q = sqlx::query(&text);
        for p in params {
            q = q.bind(p);
        }
        let rows = q
            .fetch_all(self.store.reader_pool())
            .await
            .map_err(StoreError::sql("listing records"))?;
        let mut report = ListReport {
            records: Vec::with_capacity(rows.len()),
            skipped: Vec::new(),
        };
        for r in &rows {
            match decode_row::<T>(r) {
                Ok(record) => report.records.push(record),
                Err(error) => {
                    let key: String = r.try_get("$key").unwrap_or_default();
                    tracing::warn!(table = T::SPEC.name, key, %error, "a row that does not decode was left out of a list");
                    report.skipped.push(SkippedRow {
                        key: RecordKey::from_canonical(key),
                        reason: error.to_string(),
                    });
                }
            }
        }
        Ok(report)
    }
}

/// What [`Repo::list_report`] read: the records, and the rows left out because they do not
/// decode.
#[derive(Debug, Clone, PartialEq)]
pub struct ListReport<T> {
    /// The records that decode, in key order.
    pub records: Vec<T>,
    /// The rows that do not decode.
    pub skipped: Vec<SkippedRow>,
}

/// A row left out of a list because it does not decode into its record type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRow {
    /// The row's key.
    pub key: RecordKey,
    /// Why it does not decode.
    pub reason: String,
}

pub(crate) fn decode_row<T: Record>(row: &sqlx::sqlite::SqliteRow) -> Result<T> {
    Ok(T::from_row(read_row(&T::SPEC, row, 0, false)?)?)
}

/// The record's values to bind, after checking its rules (`touch`: `updated_at` becomes now).
fn values_of<T: Record>(record: &T, touch: bool) -> Result<RecordValues> {
    record.validate()?;
    let mut values = RecordValues::of(record)?;
    if touch {
        values.set(&T::SPEC, "updated_at", &luma_model::now())?;
    }
    Ok(values)
}

/// Binds the write's stamp (synced tables only). It is taken while this handle holds the
/// writer connection, so stamps reach SQLite in the order they were made.
fn with_stamp<'q>(store: &Store, sql: &TableSql, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
    if sql.spec.is_synced() {
        q.bind(store.next_stamp().to_string())
    } else {
        q
    }
}

/// Inserts a record (`replace`: or replaces the one with the same key).
async fn insert_or_upsert<T: Record>(
    store: &Store,
    conn: &mut SqliteConnection,
    sql: &TableSql,
    record: &T,
    replace: bool,
) -> Result<()> {
    let values = values_of(record, false)?;
    let text = if replace { &sql.upsert } else { &sql.insert };
    with_stamp(store, sql, values.bind(sqlx::query(text), &sql.spec)?)
        .execute(conn)
        .await
        .map_err(StoreError::write(T::SPEC.name))?;
    Ok(())
}

pub(crate) async fn insert<T: Record>(
    store: &Store,
    conn: &mut SqliteConnection,
    sql: &TableSql,
    record: &T,
) -> Result<()> {
    insert_or_upsert(store, conn, sql, record, false).await
}

pub(crate) async fn upsert<T: Record>(
    store: &Store,
    conn: &mut SqliteConnection,
    sql: &TableSql,
    record: &T,
) -> Result<()> {
    insert_or_upsert(store, conn, sql, record, true).await
}

pub(crate) async fn update<T: Record>(
    store: &Store,
    conn: &mut SqliteConnection,
    sql: &TableSql,
    record: &T,
) -> Result<()> {
    let values = values_of(record, true)?;
    let done = with_stamp(
        store,
        sql,
        values.bind(sqlx::query(&sql.update), &sql.spec)?,
    )
    .execute(conn)
    .await
    .map_err(StoreError::write(T::SPEC.name))?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound {
            table: T::SPEC.name,
            key: record.key()?.to_string(),
        });
    }
    Ok(())
}

pub(crate) async fn delete(
    conn: &mut SqliteConnection,
    sql: &TableSql,
    key: &RecordKey,
) -> Result<bool> {
    let text = format!(
        "DELETE FROM {} WHERE {}",
        quote(sql.spec.name),
        sql.key_where
    );
    let done = bind_key_parts(sqlx::query(&text), &sql.spec, key.parts())?
        .execute(conn)
        .await
        .map_err(StoreError::write(sql.spec.name))?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn insert_many<T: Record>(
    store: &Store,
    conn: &mut SqliteConnection,
    sql: &TableSql,
    records: &[T],
) -> Result<usize> {
    // Rows are bound as typed parameters (exact for every value, unlike numbers parsed back
    // out of JSON text), many rows per statement so SQLite does the per-row work.
    let per_statement = (MAX_PARAMS / (sql.spec.columns.len() + 1)).clamp(1, BULK_CHUNK);
    let rows = records
        .iter()
        .map(|r| values_of(r, false))
        .collect::<Result<Vec<_>>>()?;
    let full_text = sql.insert_many_sql(per_statement);
    let mut n = 0;
    for chunk in rows.chunks(per_statement) {
        let text = if chunk.len() == per_statement {
            std::borrow::Cow::Borrowed(&full_text)
        } else {
            std::borrow::Cow::Owned(sql.insert_many_sql(chunk.len()))
        };
        let mut q = sqlx::query(&text);
        // One stamp per row of a synced table (local-only tables have no stamp column).
        let n_stamps = if sql.spec.is_synced() { chunk.len() } else { 0 };
        let mut stamps = store.next_stamps(n_stamps).into_iter();
        for row in chunk {
            q = row.bind(q, &sql.spec)?;
            if let Some(stamp) = stamps.next() {
                q = q.bind(stamp.to_string());
            }
        }
        let done = q
            .execute(&mut *conn)
            .await
            .map_err(StoreError::write(T::SPEC.name))?;
        n += done.rows_affected() as usize;
    }
    Ok(n)
}

/// Deletes the rows of `spec`'s table whose `column` equals `value` (their children cascade).
pub(crate) async fn delete_where(
    conn: &mut SqliteConnection,
    spec: &TableSpec,
    column: &str,
    value: &str,
) -> Result<u64> {
    let text = format!(
        "DELETE FROM {} WHERE {} = ?",
        quote(spec.name),
        quote(column)
    );
    let done = sqlx::query(&text)
        .bind(value)
        .execute(conn)
        .await
        .map_err(StoreError::write(spec.name))?;
    Ok(done.rows_affected())
}
