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

/// Why a transform was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("invalid source subject")]
    InvalidSource,
    #[error("invalid destination subject")]
    InvalidDestination,
    #[error("wildcard index {0} out of range")]
    WildcardOutOfRange(u64),
    #[error("'>' in the destination needs a '>' at the end of the source")]
    UnmatchedFullWildcard,
    #[error("unsupported transform function '{0}'")]
    UnsupportedFunction(String),
}

impl SubjectTransform {
    /// Compiles `source` (a subject filter) and `dest` (a template).
    pub fn new(source: &str, dest: &str) -> Result<SubjectTransform, TransformError> {
        if !is_valid_subject(source.as_bytes()) {
            return Err(TransformError::InvalidSource);
        }
        let source: Vec<Vec<u8>> = source.split('.').map(|t| t.as_bytes().to_vec()).collect();
        let wildcards: Vec<usize> = source
            .iter()
            .enumerate()
            .filter(|(_, t)| t.as_slice() == b"*")
            .map(|(i, _)| i)
            .collect();
        let full_wildcard = source
            .last()
            .filter(|t| t.as_slice() == b">")
            .map(|_| source.len() - 1);
        let tokens: Vec<&str> = dest.split('.').collect();
        let mut compiled = Vec::with_capacity(tokens.len());
        for (i, token) in tokens.iter().enumerate() {
            let position = |n: u64| -> Result<usize, TransformError> {
                usize::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|n| wildcards.get(n).copied())
                    .ok_or(TransformError::WildcardOutOfRange(n))
            };
            let compiled_token = if *token == ">" {
                if i + 1 != tokens.len() {
                    return Err(TransformError::InvalidDestination);
                }
                DestToken::Rest(full_wildcard.ok_or(TransformError::UnmatchedFullWildcard)?)
            } else if let Some(n) = token.strip_prefix('$').and_then(|n| n.parse::<u64>().ok()) {
                DestToken::Token(position(n)?)
            } else if let Some(call) = token.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) {
                let (name, args) = parse_call(call).ok_or(TransformError::InvalidDestination)?;
                match name.to_ascii_lowercase().as_str() {
                    "wildcard" => match args.as_slice() {
                        [n] => DestToken::Token(position(*n)?),
                        _ => return Err(TransformError::InvalidDestination),
                    },
                    "partition" => match args.split_first() {
                        Some((&buckets, indexes)) if buckets > 0 && !indexes.is_empty() => {
                            DestToken::Partition {
                                buckets: u32::try_from(buckets)
                                    .map_err(|_| TransformError::InvalidDestination)?,
                                positions: indexes
                                    .iter()
                                    .map(|&n| position(n))
                                    .collect::<Result<_, _>>()?,
                            }
                        }
                        _ => return Err(TransformError::InvalidDestination),
                    },
                    _ => return Err(TransformError::UnsupportedFunction(name.to_owned())),
                }
            } else if token.is_empty()
                || *token == "*"
                || token.bytes().any(|b| b.is_ascii_whitespace())
            {
                return Err(TransformError::InvalidDestination);
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
                    let mut hash = Fnv1a32::default();
                    for p in positions {
                        hash.write(tokens.get(*p)?);
                    }
                    out.extend_from_slice((hash.finish() % buckets).to_string().as_bytes());
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

/// `name(1, 2)` (spaces allowed around every part) as the name and its unsigned arguments.
fn parse_call(call: &str) -> Option<(&str, Vec<u64>)> {
    let (name, rest) = call.trim().split_once('(')?;
    let args = rest.trim_end().strip_suffix(')')?;
    let args = if args.trim().is_empty() {
        Vec::new()
    } else {
        args.split(',')
            .map(|a| a.trim().parse::<u64>().ok())
            .collect::<Option<Vec<u64>>>()?
    };
    Some((name.trim(), args))
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
        // nats-server 2.15.1 republished `zz.abc` through `zz.*` -> `rp.{{partition(3,1)}}`
        // as `rp.2`.
        assert_eq!(
            map("zz.*", "rp.{{partition(3,1)}}", "zz.abc").as_deref(),
            Some("rp.2")
        );
        for subject in ["zz.a", "zz.b", "zz.c", "zz.longer-token"] {
            let bucket = map("zz.*", "{{partition(5, 1)}}", subject).expect("matches");
            assert!(bucket.parse::<u32>().is_ok_and(|b| b < 5), "{bucket}");
        }
    }

    #[test]
    fn invalid_templates_are_refused() {
        use TransformError::*;
        let cases = [
            ("foo.*", "rp.*", InvalidDestination),
            ("foo.*", "rp.>", UnmatchedFullWildcard),
            ("foo.*", "rp.$2", WildcardOutOfRange(2)),
            ("foo.*", "rp.$0", WildcardOutOfRange(0)),
            ("foo..", "rp.x", InvalidSource),
            ("", "rp.x", InvalidSource),
            ("foo.*", "rp..x", InvalidDestination),
            ("foo.*", "", InvalidDestination),
            ("foo.>", "rp.>.x", InvalidDestination),
            (
                "foo.*",
                "rp.{{nosuch(1)}}",
                UnsupportedFunction("nosuch".into()),
            ),
            ("foo.*", "rp.{{wildcard()}}", InvalidDestination),
            ("foo.*", "rp.{{wildcard(1}}", InvalidDestination),
            ("foo.*", "rp.{{partition(0,1)}}", InvalidDestination),
            ("foo.*", "rp.{{partition(3)}}", InvalidDestination),
            ("foo.*", "rp.a b", InvalidDestination),
        ];
        for (source, dest, err) in cases {
            assert_eq!(
                SubjectTransform::new(source, dest),
                Err(err),
                "{source} -> {dest}"
            );
        }
    }
}
