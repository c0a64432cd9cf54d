//! Fast-producer backpressure shared by everything a publisher can fill: a client's outbound
//! queue and a route's. Past its stall threshold a receiver asks publishers to pause until it
//! drains, as nats-server stalls fast producers, instead of growing to `max_pending` and being
//! cut off.

use std::time::Duration;

use tokio::sync::Notify;

/// Shortest and longest a publisher waits for a stalled receiver per read batch (nats-server's
/// per-message stall spans the same range).
const STALL_MIN: Duration = Duration::from_millis(100);
const STALL_MAX: Duration = Duration::from_secs(1);

/// A queue publishers may have to wait for.
pub(crate) trait Backpressure: Send + Sync {
    /// Signalled when the queue is back at its stall threshold or below, or closes.
    fn drained(&self) -> &Notify;
    /// How long a stalled publisher may wait now, or `None` if it need not (drained or closed).
    fn stall_timeout(&self) -> Option<Duration>;
}

/// How long to wait for a queue holding `pending` bytes: `None` at or below `stall_at`, else
/// from `STALL_MIN` growing to `STALL_MAX` as it approaches `max_pending`. A receiver that is
/// merely behind paces its publishers; one that is stuck still reaches `max_pending` (or its
/// write deadline) and is cut off.
pub(crate) fn stall_wait(pending: u64, stall_at: u64, max_pending: u64) -> Option<Duration> {
    if pending <= stall_at {
        return None;
    }
    let span = max_pending.saturating_sub(stall_at).max(1);
    let over = (pending - stall_at).min(span);
    let extra = (STALL_MAX - STALL_MIN).as_micros() as u64 * over / span;
    Some(STALL_MIN + Duration::from_micros(extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_wait_at_or_below_the_threshold() {
        assert_eq!(stall_wait(0, 100, 1000), None);
        assert_eq!(stall_wait(100, 100, 1000), None);
    }

    #[test]
    fn wait_grows_from_min_to_max_towards_max_pending() {
        assert_eq!(
            stall_wait(101, 100, 1000),
            Some(Duration::from_micros(101_000))
        );
        assert_eq!(stall_wait(550, 100, 1000), Some(Duration::from_millis(550)));
        assert_eq!(stall_wait(1000, 100, 1000), Some(STALL_MAX));
        assert_eq!(stall_wait(5000, 100, 1000), Some(STALL_MAX));
    }

    #[test]
    fn degenerate_limits_do_not_divide_by_zero() {
        assert_eq!(stall_wait(10, 5, 5), Some(STALL_MAX));
        assert_eq!(stall_wait(10, 5, 0), Some(STALL_MAX));
    }
}
