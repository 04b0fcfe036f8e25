//! Small validation helpers shared by the record types.

use crate::error::ValidationError;

/// Longest name accepted for any named record.
pub const MAX_NAME_LEN: usize = 200;

pub(crate) fn name(
    table: &'static str,
    field: &'static str,
    v: &str,
) -> Result<(), ValidationError> {
    if v.trim().is_empty() {
        return Err(ValidationError::Empty { table, field });
    }
    let len = v.chars().count();
    if len > MAX_NAME_LEN {
        return Err(ValidationError::TooLong {
            table,
            field,
            len,
            max: MAX_NAME_LEN,
        });
    }
    Ok(())
}

pub(crate) fn int_range(
    table: &'static str,
    field: &'static str,
    v: i64,
    min: i64,
    max: i64,
) -> Result<(), ValidationError> {
    if v < min || v > max {
        return Err(ValidationError::OutOfRange {
            table,
            field,
            value: v as f64,
            min: min as f64,
            max: max as f64,
        });
    }
    Ok(())
}

pub(crate) fn finite(
    table: &'static str,
    field: &'static str,
    v: f64,
) -> Result<(), ValidationError> {
    if !v.is_finite() {
        return Err(ValidationError::NotFinite { table, field });
    }
    Ok(())
}

pub(crate) fn real_range(
    table: &'static str,
    field: &'static str,
    v: f64,
    min: f64,
    max: f64,
) -> Result<(), ValidationError> {
    finite(table, field, v)?;
    if v < min || v > max {
        return Err(ValidationError::OutOfRange {
            table,
            field,
            value: v,
            min,
            max,
        });
    }
    Ok(())
}

pub(crate) fn json_object(
    table: &'static str,
    field: &'static str,
    v: &serde_json::Value,
) -> Result<(), ValidationError> {
    if !v.is_object() {
        return Err(ValidationError::Format {
            table,
            field,
            message: "must be a JSON object".into(),
        });
    }
    Ok(())
}

/// Deepest nesting a JSON field may have: no value at level 64 or below (the root is level 0),
/// so the server's pull answer (four levels of wrapping) stays within serde_json's recursion
/// limit of 128. Mirrored by the cloud SQL's `luma.is_decodable_json` (0011).
pub const MAX_JSON_DEPTH: usize = 64;

// One table of rules: these helpers and each record's `validate()` are mirrored by the CHECK
// rules of `luma-sync/cloud/migrations/0011_untrusted_users.sql` (section 5, "value rules");
// change both together. The server refuses what a client would refuse here.

/// Text without NUL characters (PostgreSQL's text and jsonb cannot hold them).
pub(crate) fn no_nul(
    table: &'static str,
    field: &'static str,
    v: &str,
) -> Result<(), ValidationError> {
    if v.contains('\0') {
        return Err(ValidationError::Format {
            table,
            field,
            message: "must not contain a NUL character".into(),
        });
    }
    Ok(())
}

/// [`no_nul`] for every text of `fields` that is present.
pub(crate) fn no_nul_all(
    table: &'static str,
    fields: &[(&'static str, Option<&str>)],
) -> Result<(), ValidationError> {
    for (field, v) in fields {
        if let Some(v) = v {
            no_nul(table, field, v)?;
        }
    }
    Ok(())
}

/// A JSON value the server stores and every client decodes: no NUL in any string or key, no
/// value nested [`MAX_JSON_DEPTH`] levels deep.
pub(crate) fn json_value(
    table: &'static str,
    field: &'static str,
    v: &serde_json::Value,
) -> Result<(), ValidationError> {
    fn walk(v: &serde_json::Value, level: usize) -> Result<(), &'static str> {
        if level >= MAX_JSON_DEPTH {
            return Err("is nested too deeply");
        }
        match v {
            serde_json::Value::String(s) if s.contains('\0') => {
                Err("must not contain a NUL character")
            }
            serde_json::Value::Array(a) => a.iter().try_for_each(|x| walk(x, level + 1)),
            serde_json::Value::Object(m) => m.iter().try_for_each(|(k, x)| {
                if k.contains('\0') {
                    return Err("must not contain a NUL character");
                }
                walk(x, level + 1)
            }),
            _ => Ok(()),
        }
    }
    walk(v, 0).map_err(|message| ValidationError::Format {
        table,
        field,
        message: message.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_is_refused_with_the_field() {
        let err = no_nul("venues", "description", "a\0b").unwrap_err();
        assert!(
            matches!(
                err,
                ValidationError::Format {
                    field: "description",
                    ..
                }
            ),
            "{err}"
        );
        assert!(no_nul("venues", "description", "ab").is_ok());
    }

    #[test]
    fn json_depth_and_nul() {
        let mut deep = json!(1);
        for _ in 0..MAX_JSON_DEPTH {
            deep = json!([deep]);
        }
        assert!(json_value("t", "f", &deep).is_err());
        let mut ok = json!([]);
        for _ in 0..MAX_JSON_DEPTH - 1 {
            ok = json!([ok]);
        }
        assert!(json_value("t", "f", &ok).is_ok());
        assert!(json_value("t", "f", &json!({"a\u{0}": 1})).is_err());
        assert!(json_value("t", "f", &json!(["x\u{0}"])).is_err());
        assert!(json_value("t", "f", &json!({"nodes": [], "edges": []})).is_ok());
    }

    #[test]
    fn every_record_refuses_nul_in_its_text_fields() {
        use crate::{Fixture, FixtureGroup, Pattern, Record, Track, Venue, VenueId};
        let field_of = |e: ValidationError| match e {
            ValidationError::Format { field, .. } => field,
            other => panic!("unexpected {other}"),
        };
        let mut v = Venue::new("Club");
        v.description = "x\0".into();
        assert_eq!(field_of(v.validate().unwrap_err()), "description");
        let mut f = Fixture::new(VenueId::new(), 1, 1, 1);
        f.label = Some("\0".into());
        assert_eq!(field_of(f.validate().unwrap_err()), "label");
        let mut g = FixtureGroup::new(VenueId::new(), "Front");
        g.tags = vec!["a\0".into()];
        assert_eq!(field_of(g.validate().unwrap_err()), "tags");
        let mut p = Pattern::new("Chase");
        p.author_name = Some("\0".into());
        assert_eq!(field_of(p.validate().unwrap_err()), "author_name");
        let mut t = Track::new("Song");
        t.artist = Some("\0".into());
        assert_eq!(field_of(t.validate().unwrap_err()), "artist");
    }
}
