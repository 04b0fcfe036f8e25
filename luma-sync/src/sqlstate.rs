//! What a PostgreSQL SQLSTATE means for a sync call: shared by [`PostgresRemote`] (driver
//! errors) and the Supabase remote (PostgREST error bodies carry the SQLSTATE as `code`).
//!
//! [`PostgresRemote`]: crate::PostgresRemote

use crate::error::SyncError;

/// The family of a SQLSTATE, as the engine treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlStateClass {
    /// May pass if retried: serialization failure, deadlock, lock not available, query
    /// canceled, shutdown, connection problems, insufficient resources.
    Transient,
    /// The database refused the login (invalid authorization).
    Unauthorized,
    /// Insufficient privilege (`42501`, including row-level security violations).
    Forbidden,
    /// A unique (`23505`) or foreign key (`23503`) violation.
    Conflict,
    /// An undefined function or table (`42883`, `42P01`), or a function's own "not found"
    /// (`PT404`, which PostgREST answers with HTTP 404; `luma_join_venue` raises it for an
    /// unknown share code).
    NotFound,
    /// Any other refusal: retrying the same call fails the same way.
    Refused,
}

/// The family of `code` (a five-character SQLSTATE).
pub(crate) fn classify_sqlstate(code: &str) -> SqlStateClass {
    match code {
        // serialization failure, deadlock, lock not available, query canceled
        "40001" | "40P01" | "55P03" | "57014" => SqlStateClass::Transient,
        // admin shutdown, crash shutdown, cannot connect now, connection exceptions,
        // insufficient resources (too many connections, out of memory, disk full)
        c if c.starts_with("57P") || c.starts_with("08") || c.starts_with("53") => {
            SqlStateClass::Transient
        }
        "28000" | "28P01" => SqlStateClass::Unauthorized,
        "42501" => SqlStateClass::Forbidden,
        "23505" | "23503" => SqlStateClass::Conflict,
        // PT404: PostgREST's custom-status SQLSTATE for 404 ("RAISE errors with HTTP Status
        // Codes" in its Errors docs), raised by the cloud functions for "no such thing".
        "42883" | "42P01" | "PT404" => SqlStateClass::NotFound,
        _ => SqlStateClass::Refused,
    }
}

impl SqlStateClass {
    /// The engine's error for this family, with `message`.
    pub(crate) fn into_error(self, message: String) -> SyncError {
        match self {
            SqlStateClass::Transient => SyncError::transient(message),
            SqlStateClass::Unauthorized => SyncError::unauthorized(message),
            // Prefixed like the Supabase remote's class ("not found (HTTP 404, PT404): ...").
            SqlStateClass::NotFound => SyncError::permanent(format!("not found: {message}")),
            SqlStateClass::Forbidden | SqlStateClass::Conflict | SqlStateClass::Refused => {
                SyncError::permanent(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        for c in [
            "40001", "40P01", "55P03", "57014", "57P01", "08006", "53300",
        ] {
            assert_eq!(classify_sqlstate(c), SqlStateClass::Transient, "{c}");
        }
        assert_eq!(classify_sqlstate("28P01"), SqlStateClass::Unauthorized);
        assert_eq!(classify_sqlstate("42501"), SqlStateClass::Forbidden);
        assert_eq!(classify_sqlstate("23505"), SqlStateClass::Conflict);
        assert_eq!(classify_sqlstate("23503"), SqlStateClass::Conflict);
        assert_eq!(classify_sqlstate("42883"), SqlStateClass::NotFound);
        assert_eq!(classify_sqlstate("PT404"), SqlStateClass::NotFound);
        // Other PostgREST custom statuses keep the default: a permanent refusal.
        assert_eq!(classify_sqlstate("PT402"), SqlStateClass::Refused);
        assert_eq!(classify_sqlstate("P0002"), SqlStateClass::Refused);
        assert_eq!(classify_sqlstate("22023"), SqlStateClass::Refused);
        assert_eq!(classify_sqlstate("P0001"), SqlStateClass::Refused);
    }

    #[test]
    fn not_found_is_permanent_and_says_so() {
        let e = classify_sqlstate("PT404")
            .into_error("no venue has this share code (SQLSTATE PT404)".into());
        assert!(matches!(e, SyncError::Permanent { .. }), "{e:?}");
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "the remote refused the request: not found: no venue has this share code (SQLSTATE PT404)"
        );
    }
}
