//! A stand-in for PostgREST, **for tests only**: a small axum server that serves
//! `POST /rest/v1/rpc/<fn>` for the RPC subset `SupabaseRemote` uses, by running the same
//! cloud SQL function on a real PostgreSQL as PostgREST would: one transaction per request
//! (read only for STABLE functions), `set_config('role', 'authenticated', true)` and
//! `set_config('request.jwt.claims', <claims>, true)` from the bearer token, named arguments
//! from the JSON body, and errors answered in PostgREST's shape
//! (`{"code", "details", "hint", "message"}`) with PostgREST's SQLSTATE-to-status table.
//!
//! It verifies no JWT: a token is `test-user-<uuid>` (see [`token_for`]) and the claims are
//! `{"sub": <uuid>, "role": "authenticated"}`; anything else answers 401 `PGRST301`. It also
//! checks the `apikey` header. Nothing else of PostgREST (tables, filters, schema cache,
//! pagination) is emulated.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use luma_model::UserId;
use serde_json::{json, Value};
use sqlx::PgPool;

/// The anon key the stand-in expects in `apikey`.
pub const ANON_KEY: &str = "test-anon-key";

/// The bearer token the stand-in accepts for `user`.
pub fn token_for(user: UserId) -> String {
    format!("test-user-{user}")
}

struct Function {
    name: &'static str,
    /// (argument, SQL type); `jsonb` arguments take the JSON value as it is.
    args: &'static [(&'static str, &'static str)],
    stable: bool,
}

const FUNCTIONS: &[Function] = &[
    Function {
        name: "luma_push",
        args: &[("changes", "jsonb")],
        stable: false,
    },
    Function {
        name: "luma_pull",
        args: &[
            ("p_table", "text"),
            ("p_cursor", "text"),
            ("p_limit", "integer"),
            ("p_watermark", "text"),
        ],
        stable: true,
    },
    Function {
        name: "luma_watermark",
        args: &[],
        stable: true,
    },
    Function {
        name: "luma_join_venue",
        args: &[("p_code", "text")],
        stable: false,
    },
    Function {
        name: "luma_leave_venue",
        args: &[("p_venue", "uuid")],
        stable: false,
    },
    Function {
        name: "luma_memberships",
        args: &[],
        stable: true,
    },
    Function {
        name: "luma_search_patterns",
        args: &[
            ("p_tab", "text"),
            ("p_query", "text"),
            ("p_category", "text"),
            ("p_limit", "integer"),
            ("p_cursor", "text"),
        ],
        stable: true,
    },
    Function {
        name: "luma_fetch_pattern",
        args: &[("p_pattern", "uuid")],
        stable: true,
    },
];

struct Shared {
    pool: PgPool,
    requests: AtomicU64,
}

/// A running stand-in.
pub struct PostgrestStandIn {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl PostgrestStandIn {
    /// Serves on a free loopback port, running functions on `pool`.
    pub async fn start(pool: PgPool) -> Self {
        let shared = Arc::new(Shared {
            pool,
            requests: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/rest/v1/rpc/{function}", post(rpc))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for PostgrestStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(status: StatusCode, code: &str, message: &str, details: Option<String>) -> Response {
    (
        status,
        Json(json!({"code": code, "details": details, "hint": null, "message": message})),
    )
        .into_response()
}

/// PostgREST's SQLSTATE to HTTP status table ("Errors" in its docs).
fn status_of(code: &str, signed_in: bool) -> StatusCode {
    let s = match code {
        "23503" | "23505" => 409,
        "42501" => {
            if signed_in {
                403
            } else {
                401
            }
        }
        "42883" | "42P01" => 404,
        "P0001" => 400,
        // A function's custom status ("RAISE errors with HTTP Status Codes"): PTxyz answers xyz
        // (PostgREST reads the digits; anything else there is a 500).
        c if c.starts_with("PT") => c[2..]
            .parse()
            .ok()
            .filter(|n| (100..1000).contains(n))
            .unwrap_or(500),
        "25006" => 405,
        c if c.starts_with("08") || c.starts_with("53") => 503,
        c if c.starts_with("28") || c.starts_with("0L") || c.starts_with("0P") => 403,
        c if [
            "09", "25", "2D", "38", "39", "3B", "40", "54", "55", "57", "58", "F0", "HV", "P0",
            "XX",
        ]
        .iter()
        .any(|p| c.starts_with(p)) =>
        {
            500
        }
        _ => 400,
    };
    StatusCode::from_u16(s).unwrap()
}

fn db_error(e: sqlx::Error) -> Response {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            error(status_of(&code, true), &code, db.message(), None)
        }
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "PGRST000",
            "Database connection error",
            Some(e.to_string()),
        ),
    }
}

async fn rpc(
    State(shared): State<Arc<Shared>>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    if headers.get("apikey").and_then(|v| v.to_str().ok()) != Some(ANON_KEY) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key."})),
        )
            .into_response();
    }
    let user = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| t.strip_prefix("test-user-"))
        .and_then(|u| u.parse::<uuid::Uuid>().ok());
    let Some(user) = user else {
        return error(
            StatusCode::UNAUTHORIZED,
            "PGRST301",
            "JWSError JWSInvalidSignature",
            None,
        );
    };
    let Some(f) = FUNCTIONS.iter().find(|f| f.name == function) else {
        return error(
            StatusCode::NOT_FOUND,
            "PGRST202",
            &format!("Could not find the function public.{function} in the schema cache"),
            None,
        );
    };
    let args: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) | Err(_) => {
            return error(StatusCode::BAD_REQUEST, "PGRST102", "Invalid body", None);
        }
    };
    let given: BTreeSet<&str> = args
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let wanted: BTreeSet<&str> = f.args.iter().map(|(n, _)| *n).collect();
    if given != wanted {
        return error(
            StatusCode::NOT_FOUND,
            "PGRST202",
            &format!(
                "Could not find the function public.{}({}) in the schema cache",
                f.name,
                given.into_iter().collect::<Vec<_>>().join(", ")
            ),
            None,
        );
    }
    let call_args: Vec<String> = f
        .args
        .iter()
        .map(|(n, t)| {
            if *t == "jsonb" {
                format!("{n} => ($1::jsonb -> '{n}')")
            } else {
                format!("{n} => ($1::jsonb ->> '{n}')::{t}")
            }
        })
        .collect();
    let sql = format!(
        "SELECT to_jsonb(public.{}({}))",
        f.name,
        call_args.join(", ")
    );
    let claims = json!({"sub": user.to_string(), "role": "authenticated"}).to_string();
    let result: Result<Value, sqlx::Error> = async {
        let mut tx = shared.pool.begin().await?;
        if f.stable {
            sqlx::query("SET TRANSACTION READ ONLY").execute(&mut *tx).await?;
        }
        sqlx::query(
            "SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)",
        )
        .bind(&claims)
        .execute(&mut *tx)
        .await?;
        let (out,): (Option<Value>,) = sqlx::query_as(&sql).bind(&args).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(out.unwrap_or(Value::Null))
    }
    .await;
    match result {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => db_error(e),
    }
}
