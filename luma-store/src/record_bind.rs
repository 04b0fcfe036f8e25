//! Binding a record's fields straight from its serde form, without building the JSON row.
//!
//! A repository write used to turn the record into a [`luma_model::Row`] (a JSON map: one
//! allocated key and value per column) and bind from that. Walking the record's `Serialize`
//! impl once and keeping each field's value as the SQLite value it becomes does the same work
//! with a fraction of the allocations; it binds exactly what the row path binds (the
//! `record_binding_matches_the_row_path` test compares the two on records with every column
//! kind; the store's round-trip property tests cover every record type). Fields of
//! JSON and blob columns, and any value shape this fast path does not know, take the row
//! path's conversion ([`bind_value`] on the field's JSON value).
//!
//! serde offers no ready-made serializer into SQL parameters (`serde_json::to_value` is the
//! row path), so this one is hand-written.

use luma_model::{ColumnKind, Record, TableSpec};
use serde::ser::{self, Impossible, Serialize};
use serde_json::Value;

use crate::bind::{bind_value, SqliteQuery};
use crate::error::{Result, StoreError};

/// One field's value, ready to bind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bound {
    Null,
    Int(i64),
    Real(f64),
    Bool(bool),
    Text(String),
    /// Converted through JSON (the row path's rules).
    Json(Value),
}

/// The fields of a record in spec column order (`None`: the record has no such field).
pub(crate) struct RecordValues {
    values: Vec<Option<Bound>>,
}

impl RecordValues {
    /// Walks `record` once. A record that does not serialize as a plain struct (a flattened
    /// or hand-written `Serialize`) takes the row path.
    pub(crate) fn of<T: Record>(record: &T) -> Result<Self> {
        let mut collector = Collector {
            spec: &T::SPEC,
            values: vec![None; T::SPEC.columns.len()],
        };
        match record.serialize(&mut collector) {
            Ok(()) => Ok(Self {
                values: collector.values,
            }),
            Err(Error::NotAStruct(_)) => {
                let row = record.to_row()?;
                Ok(Self {
                    values: T::SPEC
                        .columns
                        .iter()
                        .map(|c| row.get(c.name).cloned().map(Bound::Json))
                        .collect(),
                })
            }
            Err(e) => Err(encode_error(&T::SPEC, e)),
        }
    }

    /// Replaces the value of `column` (no-op if the table has no such column).
    pub(crate) fn set<V: Serialize>(
        &mut self,
        spec: &TableSpec,
        column: &str,
        value: &V,
    ) -> Result<()> {
        if let Some(i) = spec.columns.iter().position(|c| c.name == column) {
            self.values[i] =
                Some(field_value(spec.columns[i].kind, value).map_err(|e| encode_error(spec, e))?);
        }
        Ok(())
    }

    /// Binds every column in spec order, as [`crate::bind::bind_all`] binds a row.
    pub(crate) fn bind<'q>(
        &self,
        mut q: SqliteQuery<'q>,
        spec: &TableSpec,
    ) -> Result<SqliteQuery<'q>> {
        for (c, v) in spec.columns.iter().zip(&self.values) {
            q = match v {
                None | Some(Bound::Null) => q.bind(None::<String>),
                Some(Bound::Int(i)) => match c.kind {
                    ColumnKind::Real => q.bind(*i as f64),
                    ColumnKind::Integer => q.bind(*i),
                    _ => bind_value(q, spec, c.name, c.kind, Some(&Value::from(*i)))?,
                },
                Some(Bound::Real(f)) => match c.kind {
                    ColumnKind::Real => q.bind(*f),
                    _ => bind_value(q, spec, c.name, c.kind, Some(&float_json(*f)))?,
                },
                Some(Bound::Bool(b)) => match c.kind {
                    ColumnKind::Bool => q.bind(*b),
                    ColumnKind::Integer => q.bind(i64::from(*b)),
                    _ => bind_value(q, spec, c.name, c.kind, Some(&Value::Bool(*b)))?,
                },
                Some(Bound::Text(s)) => match c.kind {
                    ColumnKind::Uuid | ColumnKind::Text | ColumnKind::Timestamp => {
                        q.bind(s.clone())
                    }
                    _ => bind_value(q, spec, c.name, c.kind, Some(&Value::String(s.clone())))?,
                },
                Some(Bound::Json(v)) => bind_value(q, spec, c.name, c.kind, Some(v))?,
            };
        }
        Ok(q)
    }
}

/// A float as the row path carries it (`serde_json` turns a non-finite float into null).
fn float_json(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn encode_error(spec: &TableSpec, e: Error) -> StoreError {
    match e {
        Error::Json(source) => StoreError::Row {
            source: luma_model::RowError::Encode {
                table: spec.name,
                source,
            },
        },
        Error::Custom(message) | Error::NotAStruct(message) => StoreError::Plugin {
            table: spec.name.to_string(),
            message,
        },
    }
}

/// Why a record could not be walked.
#[derive(Debug)]
enum Error {
    Json(serde_json::Error),
    Custom(String),
    NotAStruct(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Json(e) => write!(f, "{e}"),
            Error::Custom(m) | Error::NotAStruct(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        Error::Custom(msg.to_string())
    }
}

/// The value of one field: scalars directly, anything else (and JSON and blob columns) through
/// `serde_json::to_value`, exactly as the row path converts it.
fn field_value<V: Serialize + ?Sized>(
    kind: ColumnKind,
    value: &V,
) -> std::result::Result<Bound, Error> {
    if !matches!(kind, ColumnKind::Json | ColumnKind::Blob) {
        if let Ok(bound) = value.serialize(Scalar) {
            return Ok(bound);
        }
    }
    serde_json::to_value(value)
        .map(Bound::Json)
        .map_err(Error::Json)
}

/// Walks the record's top-level struct.
struct Collector<'a> {
    spec: &'a TableSpec,
    values: Vec<Option<Bound>>,
}

impl ser::SerializeStruct for &mut Collector<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<V: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> std::result::Result<(), Error> {
        // Fields that are not columns are left out, as the row path leaves them unbound.
        if let Some(i) = self.spec.columns.iter().position(|c| c.name == key) {
            self.values[i] = Some(field_value(self.spec.columns[i].kind, value)?);
        }
        Ok(())
    }

    fn end(self) -> std::result::Result<(), Error> {
        Ok(())
    }
}

fn not_a_struct<T>() -> std::result::Result<T, Error> {
    Err(Error::NotAStruct(
        "a record must serialize as a struct with named fields".into(),
    ))
}

macro_rules! refuse {
    ($($name:ident($($arg:ty),*) -> $ret:ty;)*) => {
        $(fn $name(self, $(_: $arg),*) -> std::result::Result<$ret, Error> {
            not_a_struct()
        })*
    };
}

impl<'a, 'b> ser::Serializer for &'a mut Collector<'b> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_struct(self, _: &'static str, _: usize) -> std::result::Result<Self, Error> {
        Ok(self)
    }

    refuse! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_u8(u8) -> ();
        serialize_u16(u16) -> ();
        serialize_u32(u32) -> ();
        serialize_u64(u64) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_str(&str) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }

    fn serialize_some<V: Serialize + ?Sized>(self, _: &V) -> std::result::Result<(), Error> {
        not_a_struct()
    }

    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &V,
    ) -> std::result::Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> std::result::Result<(), Error> {
        not_a_struct()
    }
}

/// Serializes one scalar field; refuses anything compound (the caller falls back to JSON).
struct Scalar;

/// A shape the scalar path does not handle (the caller falls back to JSON).
fn compound<T>() -> std::result::Result<T, Error> {
    Err(Error::Custom("not a scalar".into()))
}

/// Integer serializers that widen losslessly to `i64`.
macro_rules! widen_to_i64 {
    ($($name:ident($t:ty)),*) => {
        $(fn $name(self, v: $t) -> std::result::Result<Bound, Error> {
            Ok(Bound::Int(v.into()))
        })*
    };
}

impl ser::Serializer for Scalar {
    type Ok = Bound;
    type Error = Error;
    type SerializeSeq = Impossible<Bound, Error>;
    type SerializeTuple = Impossible<Bound, Error>;
    type SerializeTupleStruct = Impossible<Bound, Error>;
    type SerializeTupleVariant = Impossible<Bound, Error>;
    type SerializeMap = Impossible<Bound, Error>;
    type SerializeStruct = Impossible<Bound, Error>;
    type SerializeStructVariant = Impossible<Bound, Error>;

    fn serialize_bool(self, v: bool) -> std::result::Result<Bound, Error> {
        Ok(Bound::Bool(v))
    }
    widen_to_i64!(
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32)
    );
    fn serialize_u64(self, v: u64) -> std::result::Result<Bound, Error> {
        // Above i64::MAX the row path's JSON number decides (and refuses it for an integer
        // column).
        i64::try_from(v).map(Bound::Int).or_else(|_| compound())
    }
    fn serialize_f32(self, _: f32) -> std::result::Result<Bound, Error> {
        // Through JSON, as the row path: serde_json widens an f32 by its shortest decimal form.
        compound()
    }
    fn serialize_f64(self, v: f64) -> std::result::Result<Bound, Error> {
        if v.is_finite() {
            Ok(Bound::Real(v))
        } else {
            Ok(Bound::Null)
        }
    }
    fn serialize_char(self, v: char) -> std::result::Result<Bound, Error> {
        Ok(Bound::Text(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> std::result::Result<Bound, Error> {
        Ok(Bound::Text(v.to_owned()))
    }
    fn serialize_bytes(self, _: &[u8]) -> std::result::Result<Bound, Error> {
        compound()
    }
    fn serialize_none(self) -> std::result::Result<Bound, Error> {
        Ok(Bound::Null)
    }
    fn serialize_some<V: Serialize + ?Sized>(self, value: &V) -> std::result::Result<Bound, Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> std::result::Result<Bound, Error> {
        Ok(Bound::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> std::result::Result<Bound, Error> {
        Ok(Bound::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> std::result::Result<Bound, Error> {
        Ok(Bound::Text(variant.to_owned()))
    }
    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &V,
    ) -> std::result::Result<Bound, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> std::result::Result<Bound, Error> {
        compound()
    }
    fn serialize_seq(self, _: Option<usize>) -> std::result::Result<Self::SerializeSeq, Error> {
        compound()
    }
    fn serialize_tuple(self, _: usize) -> std::result::Result<Self::SerializeTuple, Error> {
        compound()
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> std::result::Result<Self::SerializeTupleStruct, Error> {
        compound()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> std::result::Result<Self::SerializeTupleVariant, Error> {
        compound()
    }
    fn serialize_map(self, _: Option<usize>) -> std::result::Result<Self::SerializeMap, Error> {
        compound()
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> std::result::Result<Self::SerializeStruct, Error> {
        compound()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> std::result::Result<Self::SerializeStructVariant, Error> {
        compound()
    }
}

#[cfg(test)]
mod tests {
    use luma_model::*;
    use serde_json::json;
    use sqlx::{Connection as _, Row as _};

    use super::RecordValues;
    use crate::bind::bind_all;

    /// Each bound parameter as SQLite sees it: its type and exact value.
    fn probe(spec: &TableSpec) -> String {
        let cols: Vec<String> = (1..=spec.columns.len())
            .map(|i| format!("typeof(?{i}) || ':' || quote(?{i})"))
            .collect();
        format!("SELECT {}", cols.join(", "))
    }

    async fn both<T: Record>(conn: &mut sqlx::SqliteConnection, record: &T) {
        let text = probe(&T::SPEC);
        let row = record.to_row().unwrap();
        let by_row = bind_all(sqlx::query(&text), &T::SPEC, &row)
            .unwrap()
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let values = RecordValues::of(record).unwrap();
        let direct = values
            .bind(sqlx::query(&text), &T::SPEC)
            .unwrap()
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        for (i, c) in T::SPEC.columns.iter().enumerate() {
            let a: String = by_row.get(i);
            let b: String = direct.get(i);
            assert_eq!(a, b, "{}.{}", T::SPEC.name, c.name);
        }
    }

    #[tokio::test]
    async fn record_binding_matches_the_row_path() {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        let venue = Venue {
            share_code: Some("ABCD1234".into()),
            uid: Some(UserId::new()),
            ..Venue::new("V \"quoted\" é")
        };
        both(&mut conn, &venue).await;
        let mut fixture = Fixture::new(venue.id, 3, 17, 16);
        fixture.label = Some("Head 1".into());
        fixture.pos_x = 0.1 + 0.2;
        fixture.rot_z = -1e-300;
        both(&mut conn, &fixture).await;
        let group = FixtureGroup::new(venue.id, "front");
        both(&mut conn, &group).await;
        both(
            &mut conn,
            &FixtureGroupMember {
                fixture_id: fixture.id,
                group_id: group.id,
                display_order: -3,
            },
        )
        .await;
        let pattern = Pattern::new("P");
        both(&mut conn, &pattern).await;
        let track = Track::new("T");
        both(&mut conn, &track).await;
        let score = Score::new(track.id, venue.id, "S");
        both(&mut conn, &score).await;
        both(
            &mut conn,
            &TrackScore {
                args: json!({"speed": 1.5, "colors": ["red"], "n": null}),
                ..TrackScore::new(score.id, pattern.id, 0.25, 1.0)
            },
        )
        .await;
        both(
            &mut conn,
            &TrackBeats {
                track_id: track.id,
                beats: vec![0.5, 1.0, 1.5],
                downbeats: vec![0.5],
                bpm: Some(120.000_000_1),
                downbeat_offset: 0.5,
                beats_per_bar: 4,
            },
        )
        .await;
        both(
            &mut conn,
            &TrackWaveform {
                track_id: track.id,
                preview_samples: vec![0, 1, 255],
                preview_colors: Some(vec![9, 8]),
                preview_bands: None,
                full_samples: Some(vec![]),
                full_colors: None,
                full_bands: Some(vec![]),
                full_ref: None,
                sample_rate: 44_100,
                decoded_duration: 10.0,
            },
        )
        .await;
    }
}
