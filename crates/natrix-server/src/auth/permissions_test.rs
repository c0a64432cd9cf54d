use super::*;
use crate::config::ResponsePermissionConfig;

fn rules(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn direction(allow: Option<&[&str]>, deny: &[&str]) -> Option<SubjectPermissionConfig> {
    Some(SubjectPermissionConfig {
        allow: allow.map(rules),
        deny: rules(deny),
    })
}

/// The permissions nats-server was checked with (see docs/security.md).
fn bob() -> Permissions {
    Permissions::compile(&PermissionsConfig {
        publish: direction(Some(&["foo.>", "req"]), &["foo.secret"]),
        subscribe: direction(Some(&["foo.*", "_INBOX.>"]), &["foo.bar"]),
        allow_responses: None,
    })
}

#[test]
fn publish_is_allowed_by_the_allow_list_and_overruled_by_deny() {
    let p = bob();
    assert!(p.can_publish(b"foo.a"));
    assert!(p.can_publish(b"foo.a.b"));
    assert!(p.can_publish(b"req"));
    assert!(!p.can_publish(b"foo.secret"));
    assert!(!p.can_publish(b"bar"));
    assert!(!p.can_publish(b"foo"));
}

#[test]
fn subscribe_matches_rules_against_the_subject_taken_literally() {
    let p = bob();
    assert!(p.can_subscribe(b"foo.a", None));
    assert!(!p.can_subscribe(b"foo.bar", None));
    // As nats-server 2.9: the rule `foo.*` matches the subscription subject `foo.>`.
    assert!(p.can_subscribe(b"foo.>", None));
    assert!(p.can_subscribe(b"foo.*", None));
    assert!(!p.can_subscribe(b"bar", None));
    assert!(!p.can_subscribe(b"bar", Some(b"q")));
    assert!(p.can_subscribe(b"_INBOX.abc", None));
}

#[test]
fn a_wildcard_subscription_does_not_receive_denied_subjects() {
    let p = bob();
    assert!(p.filters_delivery());
    assert!(p.denies_delivery(b"foo.bar"));
    assert!(!p.denies_delivery(b"foo.baz"));
    assert!(!Permissions::compile(&PermissionsConfig::default()).filters_delivery());
}

#[test]
fn queue_rules_name_the_groups_a_subject_may_be_shared_by() {
    let p = Permissions::compile(&PermissionsConfig {
        subscribe: direction(Some(&["work workers", "jobs.* v1.*", "x"]), &[]),
        ..PermissionsConfig::default()
    });
    assert!(p.can_subscribe(b"work", Some(b"workers")));
    assert!(!p.can_subscribe(b"work", Some(b"others")));
    assert!(!p.can_subscribe(b"work", None));
    assert!(p.can_subscribe(b"jobs.a", Some(b"v1.blue")));
    assert!(!p.can_subscribe(b"jobs.a", Some(b"v2.blue")));
    assert!(p.can_subscribe(b"x", Some(b"any")));
    assert!(p.can_subscribe(b"x", None));
}

#[test]
fn queue_deny_rules_refuse_only_the_named_group() {
    let p = Permissions::compile(&PermissionsConfig {
        subscribe: direction(None, &["work blocked"]),
        ..PermissionsConfig::default()
    });
    assert!(p.can_subscribe(b"work", None));
    assert!(p.can_subscribe(b"work", Some(b"fine")));
    assert!(!p.can_subscribe(b"work", Some(b"blocked")));
}

#[test]
fn deny_alone_allows_everything_else() {
    let p = Permissions::compile(&PermissionsConfig {
        publish: direction(None, &["admin.>"]),
        ..PermissionsConfig::default()
    });
    assert!(p.can_publish(b"anything"));
    assert!(!p.can_publish(b"admin.shutdown"));
    assert!(p.can_subscribe(b"admin.>", None));
}

#[test]
fn an_empty_allow_list_allows_nothing() {
    let p = Permissions::compile(&PermissionsConfig {
        subscribe: direction(Some(&[]), &[]),
        ..PermissionsConfig::default()
    });
    assert!(!p.can_subscribe(b"foo", None));
    assert!(p.can_publish(b"foo"));
}

#[test]
fn allow_responses_without_publish_rules_allows_only_responses() {
    let p = Permissions::compile(&PermissionsConfig {
        subscribe: direction(Some(&["req"]), &[]),
        allow_responses: Some(ResponsePermissionConfig::default()),
        ..PermissionsConfig::default()
    });
    assert!(!p.can_publish(b"other"));
    assert_eq!(
        p.responses,
        Some(ResponseLimits {
            max: 1,
            expires: Duration::from_secs(120)
        })
    );
    let with_publish = Permissions::compile(&PermissionsConfig {
        publish: direction(Some(&["pub.>"]), &[]),
        allow_responses: Some(ResponsePermissionConfig::default()),
        ..PermissionsConfig::default()
    });
    assert!(with_publish.can_publish(b"pub.x"));
}
