//! Property tests: `SubjectTrie` agrees with a naive model (a list of subscriptions scanned with
//! a token-by-token matcher) under random interleavings of inserts and removes, and subject
//! validation agrees with a direct transcription of nats-server's rules.

use std::collections::BTreeMap;

use natrix_subject::{
    MatchResult, SubjectTrie, TrieError, is_valid_literal_subject, is_valid_subject,
    subject_is_literal,
};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    subject: String,
    queue: Option<String>,
    id: u8,
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Entry),
    /// Removes the model entry at this index modulo the model's length.
    RemoveExisting(usize),
    /// Removes an entry that is very likely absent.
    RemoveArbitrary(Entry),
}

/// Whether subscription subject `sub` matches published subject `subject`.
fn naive_match(sub: &str, subject: &str) -> bool {
    let sub: Vec<&str> = sub.split('.').collect();
    let subject: Vec<&str> = subject.split('.').collect();
    if subject.iter().any(|t| t.is_empty()) {
        return false;
    }
    for (i, token) in sub.iter().enumerate() {
        if *token == ">" {
            return subject.len() > i;
        }
        match subject.get(i) {
            None => return false,
            Some(published) if *token != "*" && token != published => return false,
            Some(_) => {}
        }
    }
    sub.len() == subject.len()
}

/// Plain ids sorted, and each queue group's sorted members by name.
type Canonical = (Vec<u8>, BTreeMap<String, Vec<u8>>);

fn naive_matches(model: &[Entry], subject: &str) -> Canonical {
    let mut plain = Vec::new();
    let mut queues: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for e in model.iter().filter(|e| naive_match(&e.subject, subject)) {
        match &e.queue {
            None => plain.push(e.id),
            Some(q) => queues.entry(q.clone()).or_default().push(e.id),
        }
    }
    plain.sort_unstable();
    queues.values_mut().for_each(|m| m.sort_unstable());
    (plain, queues)
}

fn canonical(result: &MatchResult<u8>) -> Result<Canonical, TestCaseError> {
    let mut plain = result.plain.clone();
    plain.sort_unstable();
    let mut queues = BTreeMap::new();
    for group in &result.queues {
        prop_assert!(!group.members.is_empty(), "empty queue group returned");
        let name = String::from_utf8(group.name.to_vec())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut members = group.members.clone();
        members.sort_unstable();
        prop_assert!(
            queues.insert(name, members).is_none(),
            "queue group name returned twice"
        );
    }
    Ok((plain, queues))
}

/// Few tokens, deep subjects: many wildcard interactions.
const NARROW: &[&str] = &["a", "b", "c", "a*", "*"];
const NARROW_PUB: &[&str] = &["a", "b", "c", "a*", "*", ">", "d", ""];
/// Many tokens, shallow subjects: nodes with more literal children than fit the small-vector
/// representation, so they switch to a map and back.
const WIDE: &[&str] = &[
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "*",
];
const WIDE_PUB: &[&str] = &[
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "",
];

fn sub_subject(alphabet: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(alphabet), 0..4),
        prop::bool::ANY,
    )
        .prop_filter_map("empty subject", |(mut tokens, full)| {
            if full {
                tokens.push(">");
            }
            (!tokens.is_empty()).then(|| tokens.join("."))
        })
}

/// Published subjects; "" in the alphabet yields empty tokens (`a..b`, `.a`, `a.`), which must
/// match nothing.
fn pub_subject(alphabet: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(alphabet), 1..6).prop_map(|tokens| tokens.join("."))
}

fn entry(alphabet: &'static [&'static str]) -> impl Strategy<Value = Entry> {
    (
        sub_subject(alphabet),
        prop::option::weighted(0.4, prop::sample::select(vec!["q", "r"])),
        0u8..4,
    )
        .prop_map(|(subject, queue, id)| Entry {
            subject,
            queue: queue.map(str::to_owned),
            id,
        })
}

fn op(alphabet: &'static [&'static str]) -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => entry(alphabet).prop_map(Op::Insert),
        3 => any::<usize>().prop_map(Op::RemoveExisting),
        1 => entry(alphabet).prop_map(Op::RemoveArbitrary),
    ]
}

fn check_agreement(
    trie: &SubjectTrie<u8>,
    model: &[Entry],
    subjects: &[String],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(trie.len(), model.len());
    for subject in subjects {
        let expected = naive_matches(model, subject);
        let got = trie.matches(subject.as_bytes());
        prop_assert_eq!(canonical(&got)?, expected.clone(), "subject {}", subject);
        let interest = !expected.0.is_empty() || !expected.1.is_empty();
        prop_assert_eq!(
            trie.has_interest(subject.as_bytes()),
            interest,
            "has_interest {}",
            subject
        );
    }
    Ok(())
}

fn remove_entry(trie: &mut SubjectTrie<u8>, e: &Entry) -> Result<(), TrieError> {
    trie.remove(
        e.subject.as_bytes(),
        e.queue.as_deref().map(str::as_bytes),
        &e.id,
    )
}

/// Applies `ops` to a trie and to the model, checking agreement on `subjects` after each one,
/// then removes everything and checks that no node is left.
fn run_against_model(ops: Vec<Op>, subjects: &[String]) -> Result<(), TestCaseError> {
    let mut trie = SubjectTrie::new();
    let mut model: Vec<Entry> = Vec::new();
    let mut generation = trie.generation();
    for op in ops {
        match op {
            Op::Insert(e) => {
                prop_assert_eq!(
                    trie.insert(
                        e.subject.as_bytes(),
                        e.queue.as_deref().map(str::as_bytes),
                        e.id
                    ),
                    Ok(())
                );
                model.push(e);
                prop_assert!(trie.generation() > generation);
            }
            Op::RemoveExisting(i) => {
                if model.is_empty() {
                    continue;
                }
                let e = model.remove(i % model.len());
                prop_assert_eq!(remove_entry(&mut trie, &e), Ok(()));
                prop_assert!(trie.generation() > generation);
            }
            Op::RemoveArbitrary(e) => {
                let at = model.iter().position(|m| *m == e);
                match at {
                    Some(at) => {
                        model.remove(at);
                        prop_assert_eq!(remove_entry(&mut trie, &e), Ok(()));
                    }
                    None => {
                        prop_assert_eq!(remove_entry(&mut trie, &e), Err(TrieError::NotFound));
                        prop_assert_eq!(trie.generation(), generation);
                    }
                }
            }
        }
        generation = trie.generation();
        check_agreement(&trie, &model, subjects)?;
    }
    // Removing everything leaves no nodes behind.
    for e in model.drain(..) {
        prop_assert_eq!(remove_entry(&mut trie, &e), Ok(()));
    }
    prop_assert!(trie.is_empty());
    prop_assert_eq!(trie.node_count(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn trie_agrees_with_a_linear_scan_under_inserts_and_removes(
        ops in prop::collection::vec(op(NARROW), 1..60),
        subjects in prop::collection::vec(pub_subject(NARROW_PUB), 1..12),
    ) {
        run_against_model(ops, &subjects)?;
    }

    #[test]
    fn wide_nodes_agree_with_a_linear_scan_across_representation_changes(
        ops in prop::collection::vec(op(WIDE), 1..150),
        subjects in prop::collection::vec(pub_subject(WIDE_PUB), 1..12),
    ) {
        run_against_model(ops, &subjects)?;
    }
}

/// nats-server's `IsValidSubject`, transcribed directly.
fn spec_is_valid_subject(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut seen_full = false;
    for token in s.split('.') {
        if token.is_empty() || seen_full {
            return false;
        }
        if token.contains([' ', '\t', '\n', '\r', '\x0c']) {
            return false;
        }
        if token == ">" {
            seen_full = true;
        }
    }
    true
}

proptest! {
    #[test]
    fn subject_validation_follows_nats_server_rules(
        s in prop::collection::vec(prop::sample::select(vec!["a", ".", "*", ">", " ", "\t", "b"]), 0..8)
            .prop_map(|parts| parts.concat())
    ) {
        let valid = spec_is_valid_subject(&s);
        prop_assert_eq!(is_valid_subject(s.as_bytes()), valid);
        let literal = s.split('.').all(|t| t != "*" && t != ">");
        prop_assert_eq!(subject_is_literal(s.as_bytes()), literal);
        prop_assert_eq!(is_valid_literal_subject(s.as_bytes()), valid && literal);
        // The trie accepts exactly the valid subjects.
        let mut trie = SubjectTrie::new();
        prop_assert_eq!(trie.insert(s.as_bytes(), None, 0u8).is_ok(), valid);
    }
}
