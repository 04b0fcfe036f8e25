//! What a PostgREST or GoTrue answer means: [`HttpError`] and its [`ErrorClass`], and how
//! they map into [`SyncError`].
//!
//! Classification, first match wins (see `shared/PROTOCOL.md` "Errors"):
//!
//! 1. HTTP 401 is [`ErrorClass::Unauthorized`] (PGRST301/302/303 JWT problems, or a request
//!    PostgREST treated as anonymous): the engine refreshes the token and retries once.
//! 2. PostgREST's own codes: `PGRST000`-`PGRST003` (connection, pool) transient, `PGRST3xx`
//!    unauthorized, `PGRST1xx` bad request, `PGRST2xx` (schema cache) not found.
//! 3. A SQLSTATE `code` (the same families as [`PostgresRemote`](crate::PostgresRemote)):
//!    `40001`/`40P01`/`08*`/`53*`/`57P*` transient, `42501` forbidden, `23505`/`23503`
//!    conflict, `42883` and `PT404` not found (`PT404` is the custom-status code a function
//!    raises for a 404, e.g. `luma_join_venue` for an unknown share code since migration 0009);
//!    any other SQLSTATE on a 5xx is a bad request (PostgREST answers 500 for refusals such as
//!    `P0002`, which servers before 0009 raise for an unknown share code), except the system
//!    classes `58*`, `XX*`, `F0*`, `HV*`, which stay transient.
//! 4. The status: 408, 429 and 5xx transient, 403 forbidden, 404 not found, 409 conflict,
//!    other 4xx bad request.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;
use thiserror::Error;

use crate::error::SyncError;
use crate::sqlstate::{classify_sqlstate, SqlStateClass};

/// The family of a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The token was refused: refresh once, retry once.
    Unauthorized,
    /// The user may not do this (`42501`, 403). Permanent.
    Forbidden,
    /// A constraint conflicts (`23505`, `23503`, 409). Permanent.
    Conflict,
    /// May pass later: network, timeout, 5xx, 429, `40001`, `40P01`.
    Transient,
    /// The request is malformed or breaks a rule (400, `PGRST1xx`, `P0001`). Permanent.
    BadRequest,
    /// No such function or resource (404, `42883`, `PT404`, `PGRST2xx`). Permanent.
    NotFound,
    /// The answer is not what the protocol allows (not JSON, wrong shape). Nothing was applied
    /// by the client.
    Protocol,
}

impl ErrorClass {
    /// True if the same request may succeed later.
    pub fn is_retryable(self) -> bool {
        self == ErrorClass::Transient
    }

    fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Unauthorized => "unauthorized",
            ErrorClass::Forbidden => "forbidden",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Transient => "transient",
            ErrorClass::BadRequest => "bad request",
            ErrorClass::NotFound => "not found",
            ErrorClass::Protocol => "protocol",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed HTTP call to Supabase. Never carries a token or key.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The server answered an error status.
    #[error("{class} (HTTP {status}{}): {message}", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Api {
        /// Its family.
        class: ErrorClass,
        /// HTTP status.
        status: u16,
        /// PostgREST code (`PGRSTxxx` or a SQLSTATE) or GoTrue `error_code` / `error`.
        code: Option<String>,
        /// The server's message (`message`, `msg` or `error_description`), else the body.
        message: String,
        /// The `Retry-After` delay, if the server sent one.
        retry_after: Option<Duration>,
    },
    /// The request did not complete: connection refused or reset, TLS, timeout.
    #[error("network error{}: {source}", if *timeout { " (timeout)" } else { "" })]
    Network {
        /// True if a timeout ended it.
        timeout: bool,
        /// The client's error.
        source: reqwest::Error,
    },
    /// The answer is not the expected JSON (not JSON, truncated, wrong shape).
    #[error("HTTP {status}: the answer is not the expected JSON: {what}")]
    Malformed {
        /// HTTP status of the answer.
        status: u16,
        /// What was expected.
        what: String,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// The request could not be built (a malformed URL or header value).
    #[error("cannot build the request: {message}")]
    Request {
        /// What was wrong.
        message: String,
    },
}

impl HttpError {
    /// The family of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            HttpError::Api { class, .. } => *class,
            HttpError::Network { .. } => ErrorClass::Transient,
            HttpError::Malformed { .. } => ErrorClass::Protocol,
            HttpError::Request { .. } => ErrorClass::BadRequest,
        }
    }

    /// True if the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        self.class().is_retryable()
    }

    /// The server's `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The server's error code (`PGRSTxxx`, a SQLSTATE, or GoTrue's `error_code`).
    pub fn code(&self) -> Option<&str> {
        match self {
            HttpError::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status, if an answer arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Api { status, .. } | HttpError::Malformed { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn network(source: reqwest::Error) -> Self {
        HttpError::Network {
            timeout: source.is_timeout(),
            source,
        }
    }

    /// The error of an answer with a failure `status`, from its headers and body (parsed
    /// defensively: gateways answer other shapes, or plain text).
    pub(crate) fn from_answer(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Self {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let field = |names: &[&str]| -> Option<String> {
            let obj = json.as_ref()?.as_object()?;
            names
                .iter()
                .find_map(|n| obj.get(*n).and_then(Value::as_str).map(str::to_owned))
        };
        // PostgREST: "code" is a string. GoTrue: "code" is the HTTP status (a number),
        // "error_code" a string; older GoTrue: "error" ("invalid_grant").
        let code = field(&["error_code", "code", "error"]);
        let message = field(&["message", "msg", "error_description", "error"])
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
        let message = match field(&["details"]) {
            Some(d) => format!("{message} ({d})"),
            None => message,
        };
        HttpError::Api {
            class: classify(status, code.as_deref()),
            status: status.as_u16(),
            code,
            message,
            retry_after: retry_after(headers),
        }
    }
}

/// The family of an error answer with `status` and `code` (see the module docs).
pub fn classify(status: StatusCode, code: Option<&str>) -> ErrorClass {
    if status == StatusCode::UNAUTHORIZED {
        return ErrorClass::Unauthorized;
    }
    if let Some(code) = code {
        if let Some(n) = code.strip_prefix("PGRST") {
            match n.as_bytes().first() {
                Some(b'0') => return ErrorClass::Transient,
                Some(b'1') => return ErrorClass::BadRequest,
                Some(b'2') => return ErrorClass::NotFound,
                Some(b'3') => return ErrorClass::Unauthorized,
                _ => {}
            }
        } else if code.len() == 5
            && code
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        {
            match classify_sqlstate(code) {
                SqlStateClass::Transient => return ErrorClass::Transient,
                SqlStateClass::Unauthorized => return ErrorClass::Unauthorized,
                SqlStateClass::Forbidden => return ErrorClass::Forbidden,
                SqlStateClass::Conflict => return ErrorClass::Conflict,
                SqlStateClass::NotFound => return ErrorClass::NotFound,
                // PostgREST answers 500 for many deterministic refusals (`P0002` and other
                // `P0*` raised by a function, `2D*`, `25*`, `38*`, `39*`, `54*`, ...): a
                // SQLSTATE proves the function ran and refused, so only the system classes
                // (`58*` I/O, `XX*` internal, `F0*`, `HV*`) keep the 5xx meaning "may pass".
                SqlStateClass::Refused if status.is_server_error() => {
                    if !["58", "XX", "F0", "HV"].iter().any(|p| code.starts_with(p)) {
                        return ErrorClass::BadRequest;
                    }
                }
                SqlStateClass::Refused => {}
            }
        }
    }
    match status {
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => ErrorClass::Transient,
        s if s.is_server_error() => ErrorClass::Transient,
        StatusCode::FORBIDDEN => ErrorClass::Forbidden,
        StatusCode::NOT_FOUND => ErrorClass::NotFound,
        StatusCode::CONFLICT => ErrorClass::Conflict,
        s if s.is_client_error() => ErrorClass::BadRequest,
        _ => ErrorClass::Protocol,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

impl From<HttpError> for SyncError {
    fn from(e: HttpError) -> Self {
        let message = e.to_string();
        let out = match e.class() {
            ErrorClass::Unauthorized => SyncError::unauthorized(message),
            ErrorClass::Transient => SyncError::Transient {
                message,
                source: None,
                retry_after: e.retry_after(),
            },
            ErrorClass::Protocol => SyncError::protocol(message),
            ErrorClass::Forbidden
            | ErrorClass::Conflict
            | ErrorClass::BadRequest
            | ErrorClass::NotFound => SyncError::permanent(message),
        };
        out.with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let c = |s: u16, code: Option<&str>| classify(StatusCode::from_u16(s).unwrap(), code);
        assert_eq!(c(401, Some("PGRST301")), ErrorClass::Unauthorized);
        assert_eq!(c(401, Some("42501")), ErrorClass::Unauthorized);
        assert_eq!(c(403, Some("42501")), ErrorClass::Forbidden);
        assert_eq!(c(409, Some("23505")), ErrorClass::Conflict);
        assert_eq!(c(500, Some("40001")), ErrorClass::Transient);
        assert_eq!(c(500, Some("40P01")), ErrorClass::Transient);
        assert_eq!(c(503, Some("PGRST001")), ErrorClass::Transient);
        assert_eq!(c(406, Some("PGRST116")), ErrorClass::BadRequest);
        assert_eq!(c(404, Some("PGRST202")), ErrorClass::NotFound);
        assert_eq!(c(400, Some("P0001")), ErrorClass::BadRequest);
        assert_eq!(c(400, Some("22023")), ErrorClass::BadRequest);
        assert_eq!(c(404, Some("42883")), ErrorClass::NotFound);
        assert_eq!(c(404, Some("PT404")), ErrorClass::NotFound);
        // The SQLSTATE decides before the status, as for the other codes.
        assert_eq!(c(500, Some("PT404")), ErrorClass::NotFound);
        assert_eq!(c(429, None), ErrorClass::Transient);
        assert_eq!(c(500, Some("P0002")), ErrorClass::BadRequest);
        assert_eq!(c(500, Some("XX000")), ErrorClass::Transient);
        assert_eq!(c(502, None), ErrorClass::Transient);
        assert_eq!(c(400, Some("invalid_credentials")), ErrorClass::BadRequest);
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
