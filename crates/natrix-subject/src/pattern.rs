//! Matching one subject against one pattern, outside the trie: what permission rules need
//! (nats-server's `Sublist.Match` on a single rule, and `subjectIsSubsetMatch`).

/// True if `pattern` (which may hold `*` and `>` tokens) matches `subject`, where every token of
/// `subject` is taken literally, even `*` or `>`. This is how nats-server matches a
/// subscription's subject against permission rules: `foo.*` matches `foo.>` (the `*` takes the
/// token `>`), while `foo.bar` does not match `foo.*`.
pub fn pattern_matches(pattern: &[u8], subject: &[u8]) -> bool {
    let mut subject_tokens = subject.split(|&b| b == b'.');
    for p in pattern.split(|&b| b == b'.') {
        if p == b">" {
            return subject_tokens.next().is_some();
        }
        match subject_tokens.next() {
            Some(s) if p == b"*" || p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// True if every subject that `subset` matches is also matched by `superset` (nats-server's
/// `subjectIsSubsetMatch(subset, superset)`): `foo.bar` and `foo.*` are subsets of `foo.>`,
/// `foo.>` is not a subset of `foo.*`.
pub fn is_subset_match(subset: &[u8], superset: &[u8]) -> bool {
    let mut subset_tokens = subset.split(|&b| b == b'.');
    for sup in superset.split(|&b| b == b'.') {
        let Some(sub) = subset_tokens.next() else {
            return false;
        };
        if sup.is_empty() || sub.is_empty() {
            return false;
        }
        if sup == b">" {
            return true;
        }
        if sub == b">" {
            return false;
        }
        if sub == b"*" {
            if sup != b"*" {
                return false;
            }
            continue;
        }
        if sup != b"*" && sup != sub {
            return false;
        }
    }
    subset_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_subjects_token_by_token() {
        let cases: &[(&str, &str, bool)] = &[
            ("foo", "foo", true),
            ("foo", "foo.bar", false),
            ("foo.bar", "foo", false),
            ("foo.*", "foo.bar", true),
            ("foo.*", "foo.bar.baz", false),
            ("foo.>", "foo.bar.baz", true),
            ("foo.>", "foo", false),
            (">", "anything.at.all", true),
            ("*.bar", "foo.bar", true),
            ("*.bar", "foo.baz", false),
            // Wildcard tokens in the subject are literal tokens.
            ("foo.*", "foo.>", true),
            ("foo.>", "foo.*", true),
            ("foo.bar", "foo.*", false),
            ("foo.*", "foo.*", true),
        ];
        for (pattern, subject, want) in cases {
            assert_eq!(
                pattern_matches(pattern.as_bytes(), subject.as_bytes()),
                *want,
                "{pattern} vs {subject}"
            );
        }
    }

    #[test]
    fn subsets_are_judged_by_what_they_can_match() {
        let cases: &[(&str, &str, bool)] = &[
            ("foo.bar", "foo.>", true),
            ("foo.*", "foo.>", true),
            ("foo.>", "foo.>", true),
            ("foo.>", "foo.*", false),
            ("foo.*", "foo.*", true),
            ("foo.*", "foo.bar", false),
            ("foo.bar", "foo.*", true),
            ("foo.bar", "foo.bar", true),
            ("foo.bar", "foo.baz", false),
            ("foo", "foo.>", false),
            ("foo.bar.baz", "foo.*", false),
            ("a.b", ">", true),
            ("workers", "work*", false),
            ("work.q1", "work.*", true),
        ];
        for (subset, superset, want) in cases {
            assert_eq!(
                is_subset_match(subset.as_bytes(), superset.as_bytes()),
                *want,
                "{subset} within {superset}"
            );
        }
    }
}
