//! Subject and queue-name validation with nats-server's rules (`IsValidSubject` and friends in
//! nats-server's `sublist.go`). Wildcards are whole tokens only: `foo*` and `f>o` are literal
//! tokens, exactly as nats-server treats them.

/// The bytes nats-server counts as whitespace inside a subject (`"\t\n\f\r "`).
#[inline]
fn is_subject_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

/// A subscribe subject: non-empty tokens separated by `.`, no whitespace; `*` and `>` allowed as
/// whole tokens, `>` only last.
pub fn is_valid_subject(subject: &[u8]) -> bool {
    if subject.is_empty() {
        return false;
    }
    let mut after_full_wildcard = false;
    for token in subject.split(|&b| b == b'.') {
        if token.is_empty() || after_full_wildcard {
            return false;
        }
        if token.iter().copied().any(is_subject_whitespace) {
            return false;
        }
        if token == b">" {
            after_full_wildcard = true;
        }
    }
    true
}

/// A publish subject: a valid subject without wildcard tokens.
pub fn is_valid_literal_subject(subject: &[u8]) -> bool {
    is_valid_subject(subject) && subject_is_literal(subject)
}

/// True if no token of the subject is `*` or `>`.
pub fn subject_is_literal(subject: &[u8]) -> bool {
    subject
        .split(|&b| b == b'.')
        .all(|token| token != b"*" && token != b">")
}

/// A queue group name: non-empty, no whitespace.
pub fn is_valid_queue_name(queue: &[u8]) -> bool {
    !queue.is_empty() && !queue.iter().copied().any(is_subject_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_subjects_are_valid() {
        for s in [
            "foo",
            "foo.bar",
            "foo.bar.baz",
            "$JS.API.INFO",
            "_INBOX.abc123",
            "a-b_c.d~e",
        ] {
            assert!(is_valid_subject(s.as_bytes()), "{s}");
            assert!(is_valid_literal_subject(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn whole_token_wildcards_are_valid_subscribe_subjects_but_not_publish_subjects() {
        for s in ["*", ">", "foo.*", "foo.>", "*.bar", "*.*.>", "foo.*.baz"] {
            assert!(is_valid_subject(s.as_bytes()), "{s}");
            assert!(!subject_is_literal(s.as_bytes()), "{s}");
            assert!(!is_valid_literal_subject(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn empty_subjects_and_empty_tokens_are_invalid() {
        for s in ["", ".", "foo..bar", ".foo", "foo.", "..", "foo.bar."] {
            assert!(!is_valid_subject(s.as_bytes()), "{s:?}");
            assert!(!is_valid_literal_subject(s.as_bytes()), "{s:?}");
        }
    }

    #[test]
    fn whitespace_inside_a_subject_is_invalid() {
        for s in [
            "foo bar",
            "foo.b ar",
            " foo",
            "foo\t",
            "foo.\r",
            "foo\n.bar",
            "a\x0cb",
        ] {
            assert!(!is_valid_subject(s.as_bytes()), "{s:?}");
        }
    }

    #[test]
    fn full_wildcard_must_be_the_last_token() {
        for s in [">.foo", "foo.>.bar", ">.>", "foo.>.*"] {
            assert!(!is_valid_subject(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn partial_wildcards_inside_a_token_are_literal() {
        for s in ["foo*", "f>o", "foo.*bar", "foo.>>", "**", "foo.bar>"] {
            assert!(is_valid_subject(s.as_bytes()), "{s}");
            assert!(subject_is_literal(s.as_bytes()), "{s}");
            assert!(is_valid_literal_subject(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn queue_names_must_be_non_empty_without_whitespace() {
        assert!(is_valid_queue_name(b"workers"));
        assert!(is_valid_queue_name(b"q.1*"));
        assert!(!is_valid_queue_name(b""));
        assert!(!is_valid_queue_name(b"a b"));
        assert!(!is_valid_queue_name(b"a\tb"));
    }
}
