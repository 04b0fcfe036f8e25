//! The blob format of a full-resolution waveform: `LWF1`, then for samples, colours and bands
//! a presence byte and, when present, a little-endian u64 length and the bytes.

use crate::error::FilesError;

const MAGIC: &[u8; 4] = b"LWF1";

/// Encodes the three full-resolution arrays of a `TrackWaveform` as one blob.
pub fn encode_waveform(
    samples: Option<&[u8]>,
    colors: Option<&[u8]>,
    bands: Option<&[u8]>,
) -> Vec<u8> {
    let len = [samples, colors, bands]
        .iter()
        .map(|p| 9 + p.map_or(0, <[u8]>::len))
        .sum::<usize>();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(MAGIC);
    for part in [samples, colors, bands] {
        match part {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&(p.len() as u64).to_le_bytes());
                out.extend_from_slice(p);
            }
        }
    }
    out
}

/// Three optional arrays: samples, colours, bands.
pub type WaveformParts = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

/// Decodes [`encode_waveform`]'s format.
pub fn decode_waveform(key: &str, bytes: &[u8]) -> Result<WaveformParts, FilesError> {
    let bad = |message: &str| FilesError::Malformed {
        key: key.into(),
        message: message.into(),
    };
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| bad("not a waveform blob"))?;
    let mut rest = rest;
    let mut parts: [Option<Vec<u8>>; 3] = [None, None, None];
    for part in &mut parts {
        let (&flag, tail) = rest.split_first().ok_or_else(|| bad("truncated"))?;
        rest = tail;
        if flag == 0 {
            continue;
        }
        if rest.len() < 8 {
            return Err(bad("truncated length"));
        }
        let (len, tail) = rest.split_at(8);
        let mut buf = [0u8; 8];
        buf.copy_from_slice(len);
        let len = usize::try_from(u64::from_le_bytes(buf)).map_err(|_| bad("too long"))?;
        if tail.len() < len {
            return Err(bad("truncated data"));
        }
        let (data, tail) = tail.split_at(len);
        *part = Some(data.to_vec());
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    let [s, c, b] = parts;
    Ok((s, c, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let blob = encode_waveform(Some(&[1, 2, 3]), None, Some(&[]));
        let (s, c, b) = decode_waveform("k", &blob).unwrap();
        assert_eq!(s.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(c, None);
        assert_eq!(b.as_deref(), Some(&[][..]));
        assert!(decode_waveform("k", &blob[..blob.len() - 1]).is_err());
        assert!(decode_waveform("k", b"nope").is_err());
    }
}
