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
