//! Percent-encoding (RFC 3986 §2.1), read in one place: the `%XX` escape ([`escape_at`]) and
//! the decoder ([`decode`]) of query-string tokens (`token`) and URL-encoded certificate
//! headers (`mtls`). The canonical form of request paths (`path`) reads escapes with
//! [`escape_at`] too, but does not decode a path: it decodes only unreserved characters, keeps
//! every other escape and refuses some (see `path`).

/// How `+` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plus {
    /// A space, as in an HTML form's query string (`application/x-www-form-urlencoded`).
    Space,
    /// A `+` (a base64 character in a URL-encoded PEM).
    Literal,
}

/// The hex value of one ASCII digit, either case.
pub fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte the two hex digits at `at` and `at + 1` encode (the `XX` of a `%XX` escape whose
/// `%` is at `at - 1`); `None` unless both are hex digits.
pub fn escape_at(bytes: &[u8], at: usize) -> Option<u8> {
    let hi = hex_digit(*bytes.get(at)?)?;
    let lo = hex_digit(*bytes.get(at.checked_add(1)?)?)?;
    Some(hi << 4 | lo)
}

/// Decode every `%XX` escape, and `+` as `plus` says. `None` for a `%` not followed by two hex
/// digits, or a result that is not UTF-8.
pub fn decode(raw: &str, plus: Plus) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                out.push(escape_at(bytes, i + 1)?);
                i += 3;
                continue;
            }
            b'+' if plus == Plus::Space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_in_either_case() {
        assert_eq!(decode("ab%2Ec%2e", Plus::Space).as_deref(), Some("ab.c."));
        assert_eq!(
            decode("%E2%82%AC%e2%82%ac", Plus::Literal).as_deref(),
            Some("€€")
        );
        assert_eq!(decode("", Plus::Space).as_deref(), Some(""));
        assert_eq!(decode("plain", Plus::Literal).as_deref(), Some("plain"));
    }

    #[test]
    fn plus_is_a_space_or_itself() {
        assert_eq!(decode("a+b%2B", Plus::Space).as_deref(), Some("a b+"));
        assert_eq!(decode("a+b%2B", Plus::Literal).as_deref(), Some("a+b+"));
    }

    #[test]
    fn broken_escapes_are_refused() {
        for raw in ["%", "%2", "a%zz", "%+1", "%-1", "%2g", "%é1", "%1é"] {
            assert_eq!(decode(raw, Plus::Space), None, "{raw}");
            assert_eq!(decode(raw, Plus::Literal), None, "{raw}");
        }
    }

    #[test]
    fn a_result_that_is_not_utf8_is_refused() {
        assert_eq!(decode("%E2%28%A1", Plus::Literal), None);
        assert_eq!(decode("%ff", Plus::Space), None);
        // An escaped NUL is UTF-8: the decoder does not judge what it decodes.
        assert_eq!(decode("%00", Plus::Space).as_deref(), Some("\0"));
    }

    #[test]
    fn escape_at_reads_two_hex_digits() {
        let bytes = b"/%2f%4G%A";
        assert_eq!(escape_at(bytes, 2), Some(b'/'));
        assert_eq!(escape_at(bytes, 5), None);
        assert_eq!(escape_at(bytes, 8), None);
        assert_eq!(escape_at(bytes, 9), None);
        assert_eq!(escape_at(bytes, usize::MAX), None);
        assert_eq!(hex_digit(b'F'), Some(15));
        assert_eq!(hex_digit(b'g'), None);
    }
}
