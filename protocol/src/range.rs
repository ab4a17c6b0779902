//! One HTTP byte range (`Range: bytes=a-b`, `bytes=a-`, `bytes=-n`), parsed the same way by
//! every server that serves bytes (agents, the cdn gateway). Several ranges in one header are
//! refused: nothing here serves multipart answers.

use std::ops::Range;

/// Why a Range header cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not one `bytes=` range (`400 invalid_range`).
    #[error("{0}")]
    Invalid(String),
    /// Starts at or past the end (`416`).
    #[error("the range starts beyond the object's {size} bytes")]
    NotSatisfiable { size: u64 },
}

/// A single HTTP byte range as sent (`bytes=a-b`, `bytes=a-`, `bytes=-n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    From(u64, Option<u64>),
    Suffix(u64),
}

impl RangeSpec {
    pub fn parse(header: &str) -> Result<RangeSpec, RangeError> {
        let bad = || {
            RangeError::Invalid(format!(
                "unsupported Range {header:?}; use one bytes=a-b range"
            ))
        };
        let spec = header.trim().strip_prefix("bytes=").ok_or_else(bad)?;
        if spec.contains(',') {
            return Err(bad());
        }
        let (a, b) = spec.split_once('-').ok_or_else(bad)?;
        match (a.trim(), b.trim()) {
            ("", n) => Ok(RangeSpec::Suffix(n.parse().map_err(|_| bad())?)),
            (a, "") => Ok(RangeSpec::From(a.parse().map_err(|_| bad())?, None)),
            (a, b) => {
                let (a, b): (u64, u64) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if b < a {
                    return Err(bad());
                }
                Ok(RangeSpec::From(a, Some(b)))
            }
        }
    }

    /// A request's `Range` header as servers take it: `Ok(None)` (serve the whole body) when
    /// its unit is not `bytes`, which RFC 9110 section 14.2 says an origin server must
    /// ignore; otherwise [`RangeSpec::parse`].
    pub fn from_header(header: &str) -> Result<Option<RangeSpec>, RangeError> {
        let unit = header.trim().split('=').next().unwrap_or("").trim();
        if !unit.eq_ignore_ascii_case("bytes") {
            return Ok(None);
        }
        RangeSpec::parse(header).map(Some)
    }

    /// The half-open byte range within an object of `size` bytes.
    pub fn resolve(self, size: u64) -> Result<Range<u64>, RangeError> {
        let r = match self {
            RangeSpec::From(a, _) if a >= size => return Err(RangeError::NotSatisfiable { size }),
            RangeSpec::From(a, b) => a..b.map(|b| b.saturating_add(1)).unwrap_or(size).min(size),
            RangeSpec::Suffix(0) => return Err(RangeError::NotSatisfiable { size }),
            RangeSpec::Suffix(n) => size.saturating_sub(n)..size,
        };
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_resolve() {
        assert_eq!(
            RangeSpec::parse("bytes=0-9")
                .and_then(|r| r.resolve(100))
                .ok(),
            Some(0..10)
        );
        assert_eq!(
            RangeSpec::parse("bytes=90-")
                .and_then(|r| r.resolve(100))
                .ok(),
            Some(90..100)
        );
        assert_eq!(
            RangeSpec::parse("bytes=-5")
                .and_then(|r| r.resolve(100))
                .ok(),
            Some(95..100)
        );
        assert_eq!(
            RangeSpec::parse("bytes=50-500")
                .and_then(|r| r.resolve(100))
                .ok(),
            Some(50..100)
        );
        assert!(matches!(
            RangeSpec::parse("bytes=100-").and_then(|r| r.resolve(100)),
            Err(RangeError::NotSatisfiable { .. })
        ));
        assert!(RangeSpec::parse("bytes=5-1").is_err());
        assert_eq!(
            RangeSpec::parse("bytes=5-18446744073709551615")
                .and_then(|r| r.resolve(100))
                .ok(),
            Some(5..100)
        );
        assert!(RangeSpec::parse("bytes=0-1,5-6").is_err());
        assert!(RangeSpec::parse("items=0-1").is_err());
        assert_eq!(RangeSpec::from_header("items=0-1"), Ok(None));
        assert_eq!(
            RangeSpec::from_header("bytes=1-2"),
            Ok(Some(RangeSpec::From(1, Some(2))))
        );
        assert!(RangeSpec::from_header("bytes=1-2,4-5").is_err());
    }
}
