//! A user's permissions compiled for the connection path: may this client publish to a subject,
//! subscribe to it (with this queue group), and receive a message on it. Pure logic with
//! nats-server's rules (`canPublish`, `canSubscribe`, `canQueueSubscribe`, the deny filter on
//! delivery), so it is tested without sockets.

use std::time::Duration;

use natrix_subject::{is_subset_match, pattern_matches, subject_is_literal};

use crate::config::{PermissionsConfig, SubjectPermissionConfig};

/// One rule: a subject pattern, and for subscribe rules an optional queue group (pattern).
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    subject: Box<[u8]>,
    queue: Option<Box<[u8]>>,
}

/// An allow or deny list.
#[derive(Debug, Clone, Default, PartialEq)]
struct Rules(Vec<Rule>);

impl Rules {
    /// Subscribe rules split `"subject queue"`; publish rules are one subject each.
    fn compile(rules: &[String], with_queues: bool) -> Self {
        Rules(
            rules
                .iter()
                .map(|rule| {
                    let mut fields = rule.split_whitespace();
                    let subject = fields.next().unwrap_or_default();
                    let queue = if with_queues { fields.next() } else { None };
                    Rule {
                        subject: subject.as_bytes().into(),
                        queue: queue.map(|q| q.as_bytes().into()),
                    }
                })
                .collect(),
        )
    }

    /// Some rule without a queue matches `subject` (nats-server's `psubs` of a match).
    fn matches_plain(&self, subject: &[u8]) -> bool {
        self.0
            .iter()
            .any(|r| r.queue.is_none() && pattern_matches(&r.subject, subject))
    }

    /// The queue rules that match `subject`: `None` if there are none, else whether one of
    /// them names `queue` (nats-server's `queueMatches`).
    fn queue_verdict(&self, subject: &[u8], queue: &[u8]) -> Option<bool> {
        let mut any = false;
        for rule in &self.0 {
            let Some(rule_queue) = &rule.queue else {
                continue;
            };
            if !pattern_matches(&rule.subject, subject) {
                continue;
            }
            any = true;
            let named = if subject_is_literal(rule_queue) {
                **rule_queue == *queue
            } else {
                is_subset_match(queue, rule_queue)
            };
            if named {
                return Some(true);
            }
        }
        any.then_some(false)
    }
}

/// Allow and deny lists for one direction (publish or subscribe).
#[derive(Debug, Clone, Default, PartialEq)]
struct Direction {
    /// `None`: all allowed unless denied.
    allow: Option<Rules>,
    deny: Option<Rules>,
}

impl Direction {
    fn compile(config: Option<&SubjectPermissionConfig>, with_queues: bool) -> Self {
        let Some(config) = config else {
            return Direction::default();
        };
        Direction {
            allow: config
                .allow
                .as_deref()
                .map(|r| Rules::compile(r, with_queues)),
            deny: (!config.deny.is_empty()).then(|| Rules::compile(&config.deny, with_queues)),
        }
    }

    fn allows_plain(&self, subject: &[u8]) -> bool {
        let allowed = self
            .allow
            .as_ref()
            .is_none_or(|allow| allow.matches_plain(subject));
        allowed && !self.deny.as_ref().is_some_and(|d| d.matches_plain(subject))
    }
}

/// How many responses a client may publish to a reply subject it received, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ResponseLimits {
    /// 0: unlimited.
    pub max: u32,
    /// Zero: forever.
    pub expires: Duration,
}

/// A user's compiled permissions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Permissions {
    publish: Direction,
    subscribe: Direction,
    pub responses: Option<ResponseLimits>,
}

impl Permissions {
    pub fn compile(config: &PermissionsConfig) -> Self {
        let responses = config.allow_responses.as_ref().map(|r| ResponseLimits {
            max: r.max,
            expires: r.expires,
        });
        let mut publish = Direction::compile(config.publish.as_ref(), false);
        // As nats-server: allow_responses without publish rules allows only the responses.
        if responses.is_some() && config.publish.is_none() {
            publish.allow = Some(Rules::default());
        }
        Permissions {
            publish,
            subscribe: Direction::compile(config.subscribe.as_ref(), true),
            responses,
        }
    }

    /// The static publish check (allow, then deny). A `false` may still be allowed as a
    /// response, which the caller checks with its reply tracker.
    pub fn can_publish(&self, subject: &[u8]) -> bool {
        self.publish.allows_plain(subject)
    }

    /// May the client subscribe to `subject`, in queue group `queue` if given?
    pub fn can_subscribe(&self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        let Some(queue) = queue else {
            return self.subscribe.allows_plain(subject);
        };
        let mut allowed = true;
        if let Some(allow) = &self.subscribe.allow {
            allowed = allow
                .queue_verdict(subject, queue)
                .unwrap_or_else(|| allow.matches_plain(subject));
        }
        if allowed && let Some(deny) = &self.subscribe.deny {
            allowed = match deny.queue_verdict(subject, queue) {
                Some(named) => !named,
                None => !deny.matches_plain(subject),
            };
        }
        allowed
    }

    /// True if a message on `subject` must not be delivered to this client: a subscribe deny
    /// rule matches it (a wildcard subscription that was allowed may still cover it).
    pub fn denies_delivery(&self, subject: &[u8]) -> bool {
        self.subscribe
            .deny
            .as_ref()
            .is_some_and(|deny| deny.matches_plain(subject))
    }

    /// True if deliveries need [`Permissions::denies_delivery`] at all.
    pub fn filters_delivery(&self) -> bool {
        self.subscribe.deny.is_some()
    }
}

#[cfg(test)]
#[path = "permissions_test.rs"]
mod tests;
