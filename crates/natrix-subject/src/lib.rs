//! NATS subjects: validation of publish and subscribe subjects, and [`SubjectTrie`], the
//! wildcard-aware index of subscriptions (nats-server's "sublist") with queue groups, and single
//! pattern matching for permission rules, and [`SubjectTransform`], nats-server's subject
//! transforms (stream republish).

mod pattern;
mod transform;
mod trie;
mod validate;

pub use pattern::{is_subset_match, pattern_matches};
pub use transform::{SubjectTransform, TransformError};
pub use trie::{MAX_SUBJECT_TOKENS, MatchResult, QueueGroup, SubjectTrie, TrieError};
pub use validate::{
    is_valid_literal_subject, is_valid_queue_name, is_valid_subject, subject_is_literal,
};
