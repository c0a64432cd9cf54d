//! Unit tests for `SubjectTrie`: matching rules, queue-group merging, removal and pruning.

use super::*;

fn sorted_plain(r: &MatchResult<u32>) -> Vec<u32> {
    let mut v = r.plain.clone();
    v.sort_unstable();
    v
}

fn queue_members(r: &MatchResult<u32>, name: &str) -> Option<Vec<u32>> {
    r.queues
        .iter()
        .find(|q| q.name == name.as_bytes())
        .map(|q| {
            let mut v = q.members.clone();
            v.sort_unstable();
            v
        })
}

fn trie_with(subs: &[(&str, u32)]) -> SubjectTrie<u32> {
    let mut trie = SubjectTrie::new();
    for (subject, id) in subs {
        trie.insert(subject.as_bytes(), None, *id).unwrap();
    }
    trie
}

#[test]
fn literal_subscription_matches_only_its_subject() {
    let trie = trie_with(&[("foo.bar", 1), ("foo", 2), ("foo.bar.baz", 3)]);
    assert_eq!(sorted_plain(&trie.matches(b"foo.bar")), vec![1]);
    assert_eq!(sorted_plain(&trie.matches(b"foo")), vec![2]);
    assert_eq!(sorted_plain(&trie.matches(b"foo.bar.baz")), vec![3]);
    assert!(trie.matches(b"foo.baz").is_empty());
    assert!(trie.matches(b"bar").is_empty());
}

#[test]
fn star_matches_exactly_one_token() {
    let trie = trie_with(&[("foo.*", 1), ("*.bar", 2), ("*", 3), ("foo.*.baz", 4)]);
    assert_eq!(sorted_plain(&trie.matches(b"foo.bar")), vec![1, 2]);
    assert_eq!(sorted_plain(&trie.matches(b"foo.x")), vec![1]);
    assert_eq!(sorted_plain(&trie.matches(b"foo")), vec![3]);
    assert_eq!(sorted_plain(&trie.matches(b"foo.x.baz")), vec![4]);
    assert!(trie.matches(b"foo.x.y").is_empty());
}

#[test]
fn full_wildcard_matches_one_or_more_trailing_tokens() {
    let trie = trie_with(&[("foo.>", 1), (">", 2)]);
    assert_eq!(sorted_plain(&trie.matches(b"foo")), vec![2]);
    assert_eq!(sorted_plain(&trie.matches(b"foo.bar")), vec![1, 2]);
    assert_eq!(sorted_plain(&trie.matches(b"foo.bar.baz.qux")), vec![1, 2]);
    assert_eq!(sorted_plain(&trie.matches(b"bar.baz")), vec![2]);
}

#[test]
fn mixed_wildcards_each_deliver_once_per_subscription() {
    let trie = trie_with(&[
        ("foo.*", 1),
        ("foo.>", 2),
        ("foo.bar", 3),
        ("*.*", 4),
        ("*.>", 5),
    ]);
    assert_eq!(sorted_plain(&trie.matches(b"foo.bar")), vec![1, 2, 3, 4, 5]);
    assert_eq!(sorted_plain(&trie.matches(b"foo.bar.baz")), vec![2, 5]);
}

#[test]
fn the_same_handle_in_two_matching_entries_is_returned_twice() {
    let trie = trie_with(&[("foo.*", 7), ("foo.>", 7)]);
    assert_eq!(trie.matches(b"foo.bar").plain, vec![7, 7]);
}

#[test]
fn partial_wildcards_are_literal_tokens() {
    let trie = trie_with(&[("foo*", 1), ("f>o", 2)]);
    assert_eq!(sorted_plain(&trie.matches(b"foo*")), vec![1]);
    assert!(trie.matches(b"foox").is_empty());
    assert_eq!(sorted_plain(&trie.matches(b"f>o")), vec![2]);
}

#[test]
fn subjects_with_empty_tokens_match_nothing() {
    let trie = trie_with(&[(">", 1), ("*.*", 2), ("foo.*.bar", 3)]);
    for subject in ["", ".", "foo..bar", ".foo", "foo.", ".."] {
        assert!(trie.matches(subject.as_bytes()).is_empty(), "{subject:?}");
        assert!(!trie.has_interest(subject.as_bytes()), "{subject:?}");
    }
}

#[test]
fn wildcard_tokens_in_a_published_subject_match_only_wildcard_subscriptions() {
    let trie = trie_with(&[("foo.*", 1), ("foo.>", 2), ("foo.bar", 3)]);
    assert_eq!(sorted_plain(&trie.matches(b"foo.*")), vec![1, 2]);
}

#[test]
fn invalid_subjects_and_queue_names_are_rejected() {
    let mut trie = SubjectTrie::new();
    for subject in ["", "foo..bar", "foo.", "foo.>.bar", "foo bar"] {
        assert_eq!(
            trie.insert(subject.as_bytes(), None, 1),
            Err(TrieError::InvalidSubject)
        );
    }
    assert_eq!(
        trie.insert(b"foo", Some(b""), 1),
        Err(TrieError::InvalidSubject)
    );
    assert_eq!(
        trie.insert(b"foo", Some(b"a b"), 1),
        Err(TrieError::InvalidSubject)
    );
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 0);
    assert_eq!(trie.generation(), 0);
}

#[test]
fn queue_members_on_one_subject_form_one_group() {
    let mut trie = SubjectTrie::new();
    trie.insert(b"foo", Some(b"q"), 1).unwrap();
    trie.insert(b"foo", Some(b"q"), 2).unwrap();
    trie.insert(b"foo", Some(b"r"), 3).unwrap();
    trie.insert(b"foo", None, 4).unwrap();
    let r = trie.matches(b"foo");
    assert_eq!(r.plain, vec![4]);
    assert_eq!(r.queues.len(), 2);
    assert_eq!(queue_members(&r, "q"), Some(vec![1, 2]));
    assert_eq!(queue_members(&r, "r"), Some(vec![3]));
}

#[test]
fn queue_groups_with_the_same_name_merge_across_matching_subjects() {
    let mut trie = SubjectTrie::new();
    trie.insert(b"foo.*", Some(b"q"), 1).unwrap();
    trie.insert(b"foo.>", Some(b"q"), 2).unwrap();
    trie.insert(b"foo.bar", Some(b"q"), 3).unwrap();
    trie.insert(b"foo.>", Some(b"other"), 4).unwrap();
    let r = trie.matches(b"foo.bar");
    assert!(r.plain.is_empty());
    assert_eq!(r.queues.len(), 2);
    assert_eq!(queue_members(&r, "q"), Some(vec![1, 2, 3]));
    assert_eq!(queue_members(&r, "other"), Some(vec![4]));
}

#[test]
fn remove_takes_out_exactly_the_equal_entry() {
    let mut trie = trie_with(&[("foo", 1), ("foo", 2), ("foo", 1)]);
    trie.remove(b"foo", None, &1).unwrap();
    assert_eq!(sorted_plain(&trie.matches(b"foo")), vec![1, 2]);
    assert_eq!(trie.len(), 2);
    assert_eq!(trie.remove(b"foo", None, &3), Err(TrieError::NotFound));
    assert_eq!(trie.remove(b"bar", None, &1), Err(TrieError::NotFound));
    assert_eq!(
        trie.remove(b"foo", Some(b"q"), &1),
        Err(TrieError::NotFound)
    );
    assert_eq!(
        trie.remove(b"foo..", None, &1),
        Err(TrieError::InvalidSubject)
    );
    assert_eq!(trie.len(), 2);
}

#[test]
fn remove_from_a_queue_group_leaves_plain_and_other_groups() {
    let mut trie = SubjectTrie::new();
    trie.insert(b"foo", Some(b"q"), 1).unwrap();
    trie.insert(b"foo", Some(b"q"), 2).unwrap();
    trie.insert(b"foo", None, 1).unwrap();
    assert_eq!(
        trie.remove(b"foo", Some(b"r"), &1),
        Err(TrieError::NotFound)
    );
    trie.remove(b"foo", Some(b"q"), &1).unwrap();
    let r = trie.matches(b"foo");
    assert_eq!(r.plain, vec![1]);
    assert_eq!(queue_members(&r, "q"), Some(vec![2]));
    trie.remove(b"foo", Some(b"q"), &2).unwrap();
    let r = trie.matches(b"foo");
    assert_eq!(r.plain, vec![1]);
    assert!(r.queues.is_empty());
}

#[test]
fn removing_everything_prunes_every_node() {
    let subjects = ["a.b.c", "a.*.c", "a.>", "*.b", ">", "a.b.c.d.e", "x"];
    let mut trie = SubjectTrie::new();
    for (i, s) in subjects.iter().enumerate() {
        trie.insert(s.as_bytes(), None, i).unwrap();
        trie.insert(s.as_bytes(), Some(b"q"), i).unwrap();
    }
    assert!(trie.node_count() > 0);
    for (i, s) in subjects.iter().enumerate() {
        trie.remove(s.as_bytes(), None, &i).unwrap();
        trie.remove(s.as_bytes(), Some(b"q"), &i).unwrap();
    }
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 0);
    assert!(trie.matches(b"a.b.c").is_empty());
}

#[test]
fn churn_of_distinct_subjects_does_not_grow_the_trie() {
    let mut trie = SubjectTrie::new();
    trie.insert(b"keep.>", None, u64::MAX).unwrap();
    let baseline = trie.node_count();
    for i in 0..10_000u64 {
        let subject = format!("_INBOX.{i}.reply.{}", i % 7);
        trie.insert(subject.as_bytes(), None, i).unwrap();
        trie.insert(subject.as_bytes(), Some(b"q"), i).unwrap();
        trie.remove(subject.as_bytes(), None, &i).unwrap();
        trie.remove(subject.as_bytes(), Some(b"q"), &i).unwrap();
        assert_eq!(trie.node_count(), baseline);
    }
    assert_eq!(trie.len(), 1);
}

#[test]
fn removing_a_leaf_keeps_its_parent_with_subscriptions() {
    let mut trie = trie_with(&[("foo", 1), ("foo.bar", 2)]);
    trie.remove(b"foo.bar", None, &2).unwrap();
    assert_eq!(trie.node_count(), 1);
    assert_eq!(trie.matches(b"foo").plain, vec![1]);
}

#[test]
fn generation_increments_on_every_successful_insert_and_remove() {
    let mut trie = SubjectTrie::new();
    assert_eq!(trie.generation(), 0);
    trie.insert(b"foo", None, 1).unwrap();
    assert_eq!(trie.generation(), 1);
    trie.insert(b"foo", Some(b"q"), 2).unwrap();
    assert_eq!(trie.generation(), 2);
    trie.remove(b"foo", None, &1).unwrap();
    assert_eq!(trie.generation(), 3);
    let _ = trie.remove(b"foo", None, &1);
    let _ = trie.insert(b"", None, 1);
    assert_eq!(trie.generation(), 3, "failed operations change nothing");
}

#[test]
fn has_interest_agrees_with_matches() {
    let mut trie = SubjectTrie::new();
    trie.insert(b"foo.*.baz", None, 1).unwrap();
    trie.insert(b"bar.>", Some(b"q"), 2).unwrap();
    for (subject, expected) in [
        ("foo.x.baz", true),
        ("foo.x", false),
        ("bar.x.y", true),
        ("bar", false),
        ("baz", false),
    ] {
        assert_eq!(trie.has_interest(subject.as_bytes()), expected, "{subject}");
        assert_eq!(
            !trie.matches(subject.as_bytes()).is_empty(),
            expected,
            "{subject}"
        );
    }
}

#[test]
fn matches_into_appends_and_reuses_the_buffer() {
    let trie = trie_with(&[("foo", 1), ("bar", 2)]);
    let mut out = MatchResult::new();
    trie.matches_into(b"foo", &mut out);
    trie.matches_into(b"bar", &mut out);
    assert_eq!(out.plain, vec![1, 2]);
    out.clear();
    assert!(out.is_empty());
}

#[test]
fn subjects_as_deep_as_the_longest_control_line_insert_match_and_remove() {
    // A 4 KiB control line holds at most ~2K tokens; recursion depth follows the token count.
    let deep = vec!["t"; 4096].join(".");
    let deep_star = format!("{}.*", vec!["t"; 4095].join("."));
    let mut trie = SubjectTrie::new();
    trie.insert(deep.as_bytes(), None, 1u32).unwrap();
    trie.insert(deep_star.as_bytes(), Some(b"q"), 2).unwrap();
    let r = trie.matches(deep.as_bytes());
    assert_eq!(r.plain, vec![1]);
    assert_eq!(queue_members(&r, "q"), Some(vec![2]));
    assert!(trie.has_interest(deep.as_bytes()));
    trie.remove(deep.as_bytes(), None, &1).unwrap();
    trie.remove(deep_star.as_bytes(), Some(b"q"), &2).unwrap();
    assert_eq!(trie.node_count(), 0);
    // Dropping a deep trie with subscriptions still in it is fine too.
    trie.insert(deep.as_bytes(), None, 3).unwrap();
    drop(trie);
}

#[test]
fn subscriptions_deeper_than_the_token_limit_are_rejected() {
    let mut trie = SubjectTrie::new();
    let at_limit = vec!["t"; MAX_SUBJECT_TOKENS].join(".");
    let over = vec!["t"; MAX_SUBJECT_TOKENS + 1].join(".");
    assert_eq!(
        trie.insert(over.as_bytes(), None, 1u32),
        Err(TrieError::InvalidSubject)
    );
    trie.insert(at_limit.as_bytes(), None, 1).unwrap();
    assert_eq!(trie.matches(at_limit.as_bytes()).plain, vec![1]);
    assert!(trie.matches(over.as_bytes()).is_empty());
}

#[test]
fn a_node_with_many_children_matches_each_and_prunes_to_nothing() {
    let mut trie = SubjectTrie::new();
    let subjects: Vec<String> = (0..100).map(|i| format!("svc.{i}")).collect();
    for (i, s) in subjects.iter().enumerate() {
        trie.insert(s.as_bytes(), None, i).unwrap();
    }
    assert!(matches!(
        trie.root.literal.get(b"svc").map(|n| &n.literal),
        Some(LiteralChildren::Many(_))
    ));
    // Remove from the end, checking the survivors as the node shrinks back to a vector.
    for i in (0..100).rev() {
        trie.remove(subjects[i].as_bytes(), None, &i).unwrap();
        for (j, s) in subjects.iter().enumerate().take(i) {
            assert_eq!(trie.matches(s.as_bytes()).plain, vec![j]);
        }
        assert!(trie.matches(subjects[i].as_bytes()).is_empty());
    }
    assert_eq!(trie.node_count(), 0);
}
