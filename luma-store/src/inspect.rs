//! Read-only views of the sync bookkeeping, for tools that inspect a `luma.db` (the `luma`
//! command-line tool, an app's diagnostics screen).

use crate::error::{Result, StoreError};
use crate::store::Store;

/// One pull cursor: where the next pull of `table` for `user_id` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CursorEntry {
    /// The user the cursor belongs to (cursors are kept per signed-in user), as stored.
    pub user_id: String,
    /// The table (bookkeeping entries of the engine may use names that are not tables).
    pub table: String,
    /// The server's opaque cursor text.
    pub cursor: String,
}

impl Store {
    /// Every pull cursor of every user, ordered by user and table.
    pub async fn sync_cursors(&self) -> Result<Vec<CursorEntry>> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT user_id, tbl, cursor FROM sync_cursors ORDER BY user_id, tbl")
                .fetch_all(self.reader_pool())
                .await
                .map_err(StoreError::sql("listing pull cursors"))?;
        Ok(rows
            .into_iter()
            .map(|(user_id, table, cursor)| CursorEntry {
                user_id,
                table,
                cursor,
            })
            .collect())
    }
}
