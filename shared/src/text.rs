//! Text that came from outside (an endpoint's answer, an error that quotes
//! one) made safe to store and show: valid UTF-8, no NUL or other control
//! characters but tab and line breaks, and bounded.

use std::borrow::Cow;

/// Stands in for what could not be kept.
const REPLACEMENT: char = '\u{FFFD}';

/// The first `max_chars` characters of `bytes` as clean text: invalid UTF-8
/// and control characters (other than `\t`, `\n`, `\r`) become U+FFFD.
#[must_use]
pub fn excerpt(bytes: &[u8], max_chars: usize) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(max_chars)
        .map(clean_char)
        .collect()
}

/// `text` with control characters (other than `\t`, `\n`, `\r`) replaced;
/// borrowed when there were none.
#[must_use]
pub fn clean(text: &str) -> Cow<'_, str> {
    if text.chars().any(is_unsafe) {
        Cow::Owned(text.chars().map(clean_char).collect())
    } else {
        Cow::Borrowed(text)
    }
}

fn is_unsafe(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

fn clean_char(c: char) -> char {
    if is_unsafe(c) { REPLACEMENT } else { c }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_storable_and_bounded() {
        assert_eq!(excerpt(b"ok\0ok", 100), "ok\u{FFFD}ok");
        assert_eq!(excerpt(b"a\xff\xfeb", 100), "a\u{FFFD}\u{FFFD}b");
        assert_eq!(excerpt("é".repeat(10).as_bytes(), 3), "ééé");
        assert_eq!(
            excerpt(b"line\r\n\ttab\x1b[31m", 100),
            "line\r\n\ttab\u{FFFD}[31m"
        );
        assert!(!excerpt(&[0u8; 5000], 1000).contains('\0'));
    }

    #[test]
    fn clean_borrows_when_nothing_changes() {
        assert!(matches!(clean("plain"), Cow::Borrowed(_)));
        assert_eq!(clean("a\0b"), "a\u{FFFD}b");
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn an_excerpt_is_bounded_clean_text(
                bytes in prop::collection::vec(any::<u8>(), 0..3000),
                max in 0usize..2000,
            ) {
                let text = excerpt(&bytes, max);
                prop_assert!(text.chars().count() <= max);
                prop_assert!(!text.chars().any(is_unsafe));
                // Printable ASCII comes through as it was.
                if bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
                    let n = bytes.len().min(max);
                    prop_assert_eq!(text.as_bytes(), &bytes[..n]);
                }
            }
        }
    }
}
