//! Subject transforms (nats-server's `subjectTransform`, ADR-30): a source filter and a
//! destination template that turns each subject the source matches into a new subject. The
//! destination is made of tokens: literals, `$N` or `{{wildcard(N)}}` (the subject's token at the
//! source's N-th `*`), `{{partition(buckets, N...)}}` (a bucket number from the FNV-1a hash of the
//! named wildcards' tokens, as nats-server computes it) and a last `>` (the tokens the source's
//! `>` matched). nats-server's other functions (`split`, `slice...`, `left`, `right`, ...) are not
//! supported: a template using them is refused.

use crate::validate::is_valid_subject;

/// A compiled transform; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTransform {
    source: Vec<Vec<u8>>,
    /// Positions in the source of its `*` tokens, in order (`$1` is the first).
    wildcards: Vec<usize>,
    dest: Vec<DestToken>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DestToken {
    Literal(Vec<u8>),
    /// The subject's token at this position.
    Token(usize),
    /// The FNV-1a hash of the subject's tokens at these positions, modulo `buckets`.
    Partition {
        buckets: u32,
        positions: Vec<usize>,
    },
    /// The subject's tokens from this position on (the source's `>`).
    Rest(usize),
}

/// Why a transform was refused; the texts are nats-server's (`stream transform: <text>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("invalid subject {0}")]
    InvalidSource(String),
    /// A `*` in the destination, or a `>` without one at the end of the source.
    #[error("invalid subject")]
    InvalidSubject,
    #[error("invalid mapping destination: invalid transform{}", in_token(.0))]
    InvalidTransform(Option<String>),
    #[error("invalid mapping destination: wildcard index out of range in {token}: [{index}]")]
    IndexOutOfRange { token: String, index: u64 },
    #[error("invalid mapping destination: unknown function in {0}")]
    UnknownFunction(String),
    #[error("invalid mapping destination: not enough arguments passed to the function in {0}")]
    NotEnoughArguments(String),
    /// One of nats-server's functions natrix does not implement.
    #[error("invalid mapping destination: function not supported by natrix in {0}")]
    Unsupported(String),
}

fn in_token(token: &Option<String>) -> String {
    token
        .as_ref()
        .map(|t| format!(" in {t}"))
        .unwrap_or_default()
}

/// nats-server's transform functions that natrix does not implement.
const UNSUPPORTED: &[&str] = &[
    "split",
    "splitfromleft",
    "splitfromright",
    "slicefromleft",
    "slicefromright",
    "left",
    "right",
    "random",
];

impl SubjectTransform {
    /// Compiles `source` (a subject filter) and `dest` (a template).
    pub fn new(source: &str, dest: &str) -> Result<SubjectTransform, TransformError> {
        if !is_valid_subject(source.as_bytes()) {
            return Err(TransformError::InvalidSource(source.to_owned()));
        }
        let source_text = source;
        let source: Vec<Vec<u8>> = source.split('.').map(|t| t.as_bytes().to_vec()).collect();
        let wildcards: Vec<usize> = source
            .iter()
            .enumerate()
            .filter(|(_, t)| t.as_slice() == b"*")
            .map(|(i, _)| i)
            .collect();
        let full_wildcard = source_text.ends_with('>').then(|| source.len() - 1);
        let tokens: Vec<&str> = dest.split('.').collect();
        let mut compiled = Vec::with_capacity(tokens.len());
        for (i, token) in tokens.iter().enumerate() {
            let position = |n: u64| -> Result<usize, TransformError> {
                usize::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|n| wildcards.get(n).copied())
                    .ok_or_else(|| TransformError::IndexOutOfRange {
                        token: (*token).to_owned(),
                        index: n,
                    })
            };
            let compiled_token = if *token == ">" {
                if let Some(next) = tokens.get(i + 1) {
                    return Err(TransformError::InvalidTransform(Some((*next).to_owned())));
                }
                DestToken::Rest(full_wildcard.ok_or(TransformError::InvalidSubject)?)
            } else if let Some(n) = token.strip_prefix('$').and_then(|n| n.parse::<u64>().ok()) {
                DestToken::Token(position(n)?)
            } else if let Some(call) = token.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) {
                let unknown = || TransformError::UnknownFunction((*token).to_owned());
                let (name, args) = split_call(call).ok_or_else(unknown)?;
                let name = name.to_ascii_lowercase();
                if UNSUPPORTED.contains(&name.as_str()) {
                    return Err(TransformError::Unsupported((*token).to_owned()));
                }
                let args = numbers(args).ok_or(TransformError::InvalidTransform(None))?;
                let too_few = || TransformError::NotEnoughArguments((*token).to_owned());
                match name.as_str() {
                    "wildcard" => match args.as_slice() {
                        [n] => DestToken::Token(position(*n)?),
                        [] => return Err(too_few()),
                        _ => return Err(TransformError::InvalidTransform(None)),
                    },
                    "partition" => {
                        let (&buckets, indexes) = args.split_first().ok_or_else(too_few)?;
                        DestToken::Partition {
                            buckets: u32::try_from(buckets)
                                .map_err(|_| TransformError::InvalidTransform(None))?,
                            positions: indexes
                                .iter()
                                .map(|&n| position(n))
                                .collect::<Result<_, _>>()?,
                        }
                    }
                    _ => return Err(unknown()),
                }
            } else if *token == "*" {
                return Err(TransformError::InvalidSubject);
            } else if token.is_empty() || token.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(TransformError::InvalidTransform(None));
            } else {
                DestToken::Literal(token.as_bytes().to_vec())
            };
            compiled.push(compiled_token);
        }
        Ok(SubjectTransform {
            source,
            wildcards,
            dest: compiled,
        })
    }

    /// The transformed subject, or `None` if the source does not match `subject`.
    pub fn apply(&self, subject: &[u8]) -> Option<Vec<u8>> {
        let tokens: Vec<&[u8]> = subject.split(|&b| b == b'.').collect();
        if !self.matches(&tokens) {
            return None;
        }
        let mut out = Vec::with_capacity(subject.len() + 16);
        for (i, token) in self.dest.iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            match token {
                DestToken::Literal(literal) => out.extend_from_slice(literal),
                DestToken::Token(p) => out.extend_from_slice(tokens.get(*p)?),
                DestToken::Partition { buckets, positions } => {
                    // The named wildcards' tokens, joined without a separator, or the whole
                    // subject when none is named; no buckets is bucket 0 (as in nats-server).
                    let mut hash = Fnv1a32::default();
                    if positions.is_empty() {
                        hash.write(subject);
                    }
                    for p in positions {
                        hash.write(tokens.get(*p)?);
                    }
                    let bucket = hash.finish().checked_rem(*buckets).unwrap_or(0);
                    out.extend_from_slice(bucket.to_string().as_bytes());
                }
                DestToken::Rest(p) => out.extend_from_slice(&tokens.get(*p..)?.join(&b'.')),
            }
        }
        Some(out)
    }

    fn matches(&self, tokens: &[&[u8]]) -> bool {
        for (i, source) in self.source.iter().enumerate() {
            match (source.as_slice(), tokens.get(i)) {
                (b">", Some(_)) => return true,
                (b"*", Some(_)) => {}
                (literal, Some(token)) if literal == *token => {}
                _ => return false,
            }
        }
        tokens.len() == self.source.len()
    }

    /// The number of `*` wildcards in the source.
    pub fn wildcard_count(&self) -> usize {
        self.wildcards.len()
    }
}

/// `name(args)` (spaces allowed around every part) as the name and the text of its arguments.
fn split_call(call: &str) -> Option<(&str, &str)> {
    let (name, rest) = call.trim().split_once('(')?;
    let args = rest.trim_end().strip_suffix(')')?;
    Some((name.trim(), args))
}

/// Comma-separated unsigned numbers (spaces allowed); none for an empty text.
fn numbers(args: &str) -> Option<Vec<u64>> {
    if args.trim().is_empty() {
        return Some(Vec::new());
    }
    args.split(',')
        .map(|a| a.trim().parse::<u64>().ok())
        .collect()
}

/// 32-bit FNV-1a, the hash nats-server's `partition` uses.
struct Fnv1a32(u32);

impl Default for Fnv1a32 {
    fn default() -> Self {
        Fnv1a32(0x811c_9dc5)
    }
}

impl Fnv1a32 {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u32::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }

    fn finish(&self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::{SubjectTransform, TransformError};

    fn map(source: &str, dest: &str, subject: &str) -> Option<String> {
        let transform = SubjectTransform::new(source, dest).expect("a valid transform");
        transform
            .apply(subject.as_bytes())
            .map(|s| String::from_utf8(s).expect("utf-8"))
    }

    #[test]
    fn wildcards_are_referenced_by_position_in_either_notation() {
        assert_eq!(map("foo.*", "rp.$1", "foo.a").as_deref(), Some("rp.a"));
        assert_eq!(
            map("foo.*", "rp.{{wildcard(1)}}", "foo.a").as_deref(),
            Some("rp.a")
        );
        assert_eq!(
            map("foo.*", "rp.{{ Wildcard( 1 ) }}", "foo.a").as_deref(),
            Some("rp.a")
        );
        assert_eq!(
            map("foo.*.*", "rp.$2.$1", "foo.a.b").as_deref(),
            Some("rp.b.a")
        );
        assert_eq!(map("foo.*", "rp.$1.$1", "foo.a").as_deref(), Some("rp.a.a"));
    }

    #[test]
    fn a_full_wildcard_carries_the_rest_of_the_subject() {
        assert_eq!(map(">", "rp.>", "a.b.c").as_deref(), Some("rp.a.b.c"));
        assert_eq!(map("foo.>", "rp.>", "foo.a.b").as_deref(), Some("rp.a.b"));
        assert_eq!(
            map("foo.*.>", "$1.x.>", "foo.a.b.c").as_deref(),
            Some("a.x.b.c")
        );
    }

    #[test]
    fn subjects_the_source_does_not_match_are_not_transformed() {
        assert_eq!(map("foo.*", "rp.$1", "foo.a.b"), None);
        assert_eq!(map("foo.*", "rp.$1", "bar.a"), None);
        assert_eq!(map("foo.>", "rp.>", "foo"), None);
        assert_eq!(map("foo", "rp", "foo").as_deref(), Some("rp"));
    }

    #[test]
    fn tokens_that_only_contain_placeholders_are_literal() {
        assert_eq!(map("foo.*", "rp.a$1", "foo.x").as_deref(), Some("rp.a$1"));
        assert_eq!(
            map("foo.*", "rp.{{wildcard(1)}}x", "foo.x").as_deref(),
            Some("rp.{{wildcard(1)}}x")
        );
    }

    #[test]
    fn partition_matches_nats_server() {
        // What nats-server 2.15.1 stored or republished for the same transforms.
        let cases = [
            ("zz.*", "rp.{{partition(3,1)}}", "zz.abc", "rp.2"),
            ("q0.*.*", "p.{{partition(7)}}", "q0.abc.de", "p.2"),
            ("q0.*.*", "p.{{partition(7)}}", "q0.x.y", "p.5"),
            ("q.*.*", "p.{{partition(7,1,2)}}", "q.abc.de", "p.2"),
            ("q.*.*", "p.{{partition(7,1,2)}}", "q.x.y", "p.4"),
            ("q.*.*", "p.{{partition(0,1)}}", "q.x.y", "p.0"),
        ];
        for (source, dest, subject, expected) in cases {
            assert_eq!(
                map(source, dest, subject).as_deref(),
                Some(expected),
                "{source} -> {dest}: {subject}"
            );
        }
    }

    #[test]
    fn invalid_templates_are_refused_with_nats_servers_texts() {
        let cases = [
            ("foo.*", "rp.*", "invalid subject"),
            ("foo.*", "rp.>", "invalid subject"),
            (
                "foo.*",
                "rp.$2",
                "invalid mapping destination: wildcard index out of range in $2: [2]",
            ),
            (
                "foo.*",
                "rp.{{wildcard(3)}}",
                "invalid mapping destination: wildcard index out of range in {{wildcard(3)}}: [3]",
            ),
            ("foo..", "rp.x", "invalid subject foo.."),
            ("", "rp.x", "invalid subject "),
            (
                "foo.*",
                "rp..x",
                "invalid mapping destination: invalid transform",
            ),
            (
                "foo.*",
                "",
                "invalid mapping destination: invalid transform",
            ),
            (
                "foo.*",
                "rp x",
                "invalid mapping destination: invalid transform",
            ),
            (
                "foo.>",
                "rp.>.x",
                "invalid mapping destination: invalid transform in x",
            ),
            (
                "foo.*",
                "rp.{{nosuch(1)}}",
                "invalid mapping destination: unknown function in {{nosuch(1)}}",
            ),
            (
                "foo.*",
                "rp.{{wildcard(1}}",
                "invalid mapping destination: unknown function in {{wildcard(1}}",
            ),
            (
                "foo.*",
                "rp.{{wildcard()}}",
                "invalid mapping destination: not enough arguments passed to the function in \
                 {{wildcard()}}",
            ),
            (
                "foo.*",
                "rp.{{split(1,-)}}",
                "invalid mapping destination: function not supported by natrix in {{split(1,-)}}",
            ),
        ];
        for (source, dest, text) in cases {
            let err = SubjectTransform::new(source, dest).expect_err("refused");
            assert_eq!(err.to_string(), text, "{source} -> {dest}");
        }
        assert_eq!(
            SubjectTransform::new("foo.*", "rp.$0"),
            Err(TransformError::IndexOutOfRange {
                token: "$0".into(),
                index: 0
            })
        );
    }
}
