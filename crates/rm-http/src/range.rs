//! HTTP `Range` requests (RFC 9110 §14): one byte range, resolved against a length.
//!
//! Only single ranges are served. A header the server does not understand — another unit,
//! bad syntax, several ranges — is ignored and the whole representation is sent (RFC 9110
//! §14.2 allows exactly that); a range that starts past the end is unsatisfiable (416).

/// One parsed byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-last` (`last` inclusive; `None`: to the end).
    FromTo(u64, Option<u64>),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

/// What to send for a representation of some length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// 200: all of it.
    Full,
    /// 206: bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// 416: nothing of it.
    Unsatisfiable,
}

/// Parses a `Range` header value; `None` means "ignore it and send everything".
pub fn parse(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return digits(last).then(|| last.parse().ok().map(ByteRange::Suffix))?;
    }
    if !digits(first) {
        return None;
    }
    let first: u64 = first.parse().ok()?;
    if last.is_empty() {
        return Some(ByteRange::FromTo(first, None));
    }
    if !digits(last) {
        return None;
    }
    let last: u64 = last.parse().ok()?;
    (first <= last).then_some(ByteRange::FromTo(first, Some(last)))
}

/// Resolves a parsed range against a representation of `len` bytes.
pub fn resolve(range: Option<ByteRange>, len: u64) -> Resolved {
    match range {
        None => Resolved::Full,
        Some(ByteRange::FromTo(first, last)) => {
            if first >= len {
                return Resolved::Unsatisfiable;
            }
            let end = last.map_or(len - 1, |l| l.min(len - 1));
            Resolved::Partial { start: first, end }
        }
        Some(ByteRange::Suffix(n)) => {
            if n == 0 || len == 0 {
                return Resolved::Unsatisfiable;
            }
            Resolved::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            }
        }
    }
}

/// Whether an `If-Range` value lets the range apply: only a strong match of the Etag.
pub fn if_range_matches(if_range: Option<&str>, etag: &str) -> bool {
    match if_range {
        None => true,
        Some(v) => !v.trim_start().starts_with("W/") && v.trim() == etag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_per_rfc_9110() {
        let r = |h: &str, len| resolve(parse(h), len);
        assert_eq!(r("bytes=0-9", 100), Resolved::Partial { start: 0, end: 9 });
        assert_eq!(
            r("bytes=90-", 100),
            Resolved::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            r("bytes=90-500", 100),
            Resolved::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            r("bytes=-10", 100),
            Resolved::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            r("bytes=-500", 100),
            Resolved::Partial { start: 0, end: 99 }
        );
        assert_eq!(
            r("bytes=99-99", 100),
            Resolved::Partial { start: 99, end: 99 }
        );
        assert_eq!(r("bytes=100-", 100), Resolved::Unsatisfiable);
        assert_eq!(r("bytes=-0", 100), Resolved::Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Resolved::Unsatisfiable);
        // Not understood: ignored, the whole thing is sent.
        for ignored in [
            "items=0-5",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=0-1,5-6",
            "bytes=",
            "bytes=--1",
            "bytes=1",
            "bytes=+1-2",
        ] {
            assert_eq!(r(ignored, 100), Resolved::Full, "{ignored}");
        }
        assert!(if_range_matches(None, "\"x\""));
        assert!(if_range_matches(Some("\"x\""), "\"x\""));
        assert!(!if_range_matches(Some("\"y\""), "\"x\""));
        assert!(!if_range_matches(Some("W/\"x\""), "\"x\""));
    }
}
