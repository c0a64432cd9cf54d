//! Subject matching between literal subjects and filters, and overlap between two filters
//! (nats-server's `subjectIsSubsetMatch` / `SubjectsCollide`), token by token, no allocation.

/// True if the literal `subject` is matched by `filter` (which may hold `*` and `>`).
pub fn subject_matches(filter: &[u8], subject: &[u8]) -> bool {
    let mut f = filter.split(|&b| b == b'.');
    let mut s = subject.split(|&b| b == b'.');
    loop {
        match (f.next(), s.next()) {
            (Some(b">"), Some(_)) => return true,
            (Some(ft), Some(st)) => {
                if ft != b"*" && ft != st {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True if some literal subject is matched by both filters.
pub fn subjects_overlap(a: &[u8], b: &[u8]) -> bool {
    let mut x = a.split(|&c| c == b'.');
    let mut y = b.split(|&c| c == b'.');
    loop {
        match (x.next(), y.next()) {
            (Some(b">"), Some(_)) | (Some(_), Some(b">")) => return true,
            (Some(p), Some(q)) => {
                if p != b"*" && q != b"*" && p != q {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True if the filter matches every subject (`""` or `>`), as nats-server treats purge and
/// info filters.
pub fn is_match_all(filter: &[u8]) -> bool {
    filter.is_empty() || filter == b">"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_wildcard_matching() {
        assert!(subject_matches(b"foo.*", b"foo.bar"));
        assert!(!subject_matches(b"foo.*", b"foo.bar.baz"));
        assert!(subject_matches(b"foo.>", b"foo.bar.baz"));
        assert!(!subject_matches(b"foo.>", b"foo"));
        assert!(subject_matches(b"foo", b"foo"));
        assert!(!subject_matches(b"foo", b"foo.bar"));
        assert!(subject_matches(b">", b"a"));
        assert!(subject_matches(b"*.b", b"a.b"));
    }

    #[test]
    fn overlap_is_symmetric_and_token_wise() {
        for (a, b, want) in [
            ("a.*", "a.b", true),
            ("a.b", "a.b", true),
            ("a.>", "a.b.c", true),
            ("a.*", "b.*", false),
            ("*", "a.b", false),
            ("a.*.c", "a.b.*", true),
            (">", "$JS.API.INFO", true),
            ("$JS.>", "$JS.API.>", true),
            ("a", "a.b", false),
        ] {
            assert_eq!(
                subjects_overlap(a.as_bytes(), b.as_bytes()),
                want,
                "{a} {b}"
            );
            assert_eq!(
                subjects_overlap(b.as_bytes(), a.as_bytes()),
                want,
                "{b} {a}"
            );
        }
    }
}
