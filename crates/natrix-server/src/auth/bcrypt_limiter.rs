//! Bounds the bcrypt checks running at once. Each costs milliseconds of CPU on a blocking
//! thread; without a bound, a flood of CONNECTs with wrong passwords would fill tokio's blocking
//! pool (512 threads) and every core with checks, and starve the runtime's workers. With it, at
//! most `permits` checks run and the others wait their turn (first come, first served) while
//! their authentication timeout runs.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::sync::Semaphore;

/// Checks that may run at once: one per CPU, at least 2 and at most 16. One per CPU lets a
/// reconnect storm of legitimate clients use the whole machine when there is nothing else to
/// do, while the bcrypt threads never outnumber the runtime's workers (one per CPU), so the OS
/// scheduler still gives routing at least half the CPU during a flood. At least 2, so that one
/// slow check does not serialise every CONNECT on a small machine; at most 16, since past that
/// more parallel checks only add latency to each without serving anyone sooner.
fn default_permits() -> usize {
    std::thread::available_parallelism()
        .map_or(2, NonZeroUsize::get)
        .clamp(2, 16)
}

#[derive(Debug)]
pub(crate) struct BcryptLimiter {
    permits: Arc<Semaphore>,
}

impl Default for BcryptLimiter {
    fn default() -> Self {
        Self::new(default_permits())
    }
}

impl BcryptLimiter {
    pub fn new(permits: usize) -> Self {
        assert!(
            permits > 0,
            "a bcrypt limiter without permits would block every check"
        );
        Self {
            permits: Arc::new(Semaphore::new(permits)),
        }
    }

    /// Runs `check` on a blocking thread once a permit is free; `None` if it panicked. The
    /// permit goes with the check, so it is held until the check ends even if the caller stops
    /// waiting (a connection timed out or closed): the bound counts what runs, not who waits.
    pub fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = Option<T>> + Send + 'static {
        let permits = self.permits.clone();
        async move {
            // The semaphore is never closed, so acquiring fails only in theory.
            let permit = permits.acquire_owned().await.ok()?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                check()
            })
            .await
            .ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn permits_follow_the_cpus_within_bounds() {
        assert!((2..=16).contains(&default_permits()));
    }

    /// Runs `checks` checks of `hold` each through `limiter` at once; the most seen running.
    async fn most_running_at_once(limiter: &BcryptLimiter, checks: usize, hold: Duration) -> usize {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..checks {
            let (running, most) = (running.clone(), most.clone());
            tasks.spawn(limiter.run(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(hold);
                running.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        while let Some(done) = tasks.join_next().await {
            assert!(matches!(done, Ok(Some(()))), "a check did not run");
        }
        most.load(Ordering::SeqCst)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_checks_run_at_once_than_there_are_permits() {
        let limiter = BcryptLimiter::new(3);
        // 24 checks of 20 ms: unbounded, the blocking pool would run them all at once.
        let most = most_running_at_once(&limiter, 24, Duration::from_millis(20)).await;
        assert_eq!(most, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_stops_waiting_does_not_leak_its_permit() {
        let limiter = BcryptLimiter::new(1);
        // One caller gives up while its check runs, another while it waits for the permit.
        let running = limiter.run(|| std::thread::sleep(Duration::from_millis(200)));
        let _ = tokio::time::timeout(Duration::from_millis(10), running).await;
        let waiting = limiter.run(|| ());
        assert!(
            tokio::time::timeout(Duration::from_millis(10), waiting)
                .await
                .is_err(),
            "ran while the first check held the only permit"
        );
        let done = tokio::time::timeout(Duration::from_secs(5), limiter.run(|| 7)).await;
        assert!(matches!(done, Ok(Some(7))), "the permit was not returned");
        assert_eq!(
            most_running_at_once(&limiter, 4, Duration::from_millis(5)).await,
            1
        );
    }
}
