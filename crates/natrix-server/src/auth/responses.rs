//! `allow_responses`: the reply subjects a client received, so that it may publish its
//! responses there (at most `max` each, within `expires`), as nats-server's `client.replies`.
//! Bounded: used and expired entries are pruned as it grows, and past a hard cap the oldest go.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::permissions::ResponseLimits;

/// Prune after this many new replies (nats-server's `replyPermLimit`) or this long.
const PRUNE_EVERY: u32 = 4096;
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);
/// At most this many reply subjects are remembered per client; beyond, the oldest are dropped
/// (nats-server has no cap when responses never expire and are unlimited).
const MAX_REPLIES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Reply {
    received: Instant,
    sent: u32,
}

#[derive(Debug)]
pub(crate) struct ReplyTracker {
    limits: ResponseLimits,
    replies: HashMap<Box<[u8]>, Reply>,
    since_prune: u32,
    last_prune: Instant,
}

impl ReplyTracker {
    pub fn new(limits: ResponseLimits, now: Instant) -> Self {
        Self {
            limits,
            replies: HashMap::new(),
            since_prune: 0,
            last_prune: now,
        }
    }

    /// The client was sent a message with this reply subject.
    pub fn record(&mut self, reply: &[u8], now: Instant) {
        self.replies.insert(
            reply.into(),
            Reply {
                received: now,
                sent: 0,
            },
        );
        self.since_prune += 1;
        if self.since_prune > PRUNE_EVERY || now.duration_since(self.last_prune) > PRUNE_INTERVAL {
            self.prune(now);
        }
    }

    /// May the client publish a response to `subject` now? Counts the response if so.
    pub fn allow(&mut self, subject: &[u8], now: Instant) -> bool {
        let Some(reply) = self.replies.get_mut(subject) else {
            return false;
        };
        reply.sent += 1;
        let limits = self.limits;
        let too_many = limits.max > 0 && reply.sent > limits.max;
        let expired =
            !limits.expires.is_zero() && now.duration_since(reply.received) > limits.expires;
        if too_many || expired {
            self.replies.remove(subject);
            return false;
        }
        true
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.replies.len()
    }

    fn prune(&mut self, now: Instant) {
        let limits = self.limits;
        self.replies.retain(|_, r| {
            let used_up = limits.max > 0 && r.sent >= limits.max;
            let expired =
                !limits.expires.is_zero() && now.duration_since(r.received) > limits.expires;
            !used_up && !expired
        });
        if self.replies.len() > MAX_REPLIES {
            let mut ages: Vec<Instant> = self.replies.values().map(|r| r.received).collect();
            let excess = self.replies.len() - MAX_REPLIES;
            ages.select_nth_unstable(excess);
            let cutoff = ages[excess];
            self.replies.retain(|_, r| r.received >= cutoff);
        }
        self.since_prune = 0;
        self.last_prune = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(max: u32, expires: Duration) -> (ReplyTracker, Instant) {
        let now = Instant::now();
        (ReplyTracker::new(ResponseLimits { max, expires }, now), now)
    }

    #[test]
    fn one_response_per_request_by_default() {
        let (mut t, now) = tracker(1, Duration::from_secs(120));
        assert!(!t.allow(b"_INBOX.a", now), "nothing received yet");
        t.record(b"_INBOX.a", now);
        assert!(t.allow(b"_INBOX.a", now));
        assert!(!t.allow(b"_INBOX.a", now), "a second response is refused");
    }

    #[test]
    fn responses_expire() {
        let (mut t, now) = tracker(0, Duration::from_secs(60));
        t.record(b"r", now);
        assert!(t.allow(b"r", now + Duration::from_secs(59)));
        assert!(
            t.allow(b"r", now + Duration::from_secs(59)),
            "max 0 is unlimited"
        );
        assert!(!t.allow(b"r", now + Duration::from_secs(61)));
    }

    #[test]
    fn the_tracker_stays_bounded_when_nothing_expires() {
        let (mut t, now) = tracker(0, Duration::ZERO);
        for i in 0..(MAX_REPLIES + 2 * PRUNE_EVERY as usize) {
            let at = now + Duration::from_micros(i as u64);
            t.record(format!("_INBOX.{i}").as_bytes(), at);
        }
        assert!(
            t.len() <= MAX_REPLIES + PRUNE_EVERY as usize + 1,
            "{}",
            t.len()
        );
        let last = format!("_INBOX.{}", MAX_REPLIES + 2 * PRUNE_EVERY as usize - 1);
        assert!(t.allow(last.as_bytes(), now), "the newest are kept");
    }
}
