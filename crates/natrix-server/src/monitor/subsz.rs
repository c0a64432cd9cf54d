//! `/subsz` (also `/subscriptionsz`): subscription-index statistics and, with `subs=1`, the
//! subscriptions themselves, optionally only those a `test` subject would be delivered to.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::response::Response;
use natrix_subject::is_valid_literal_subject;
use serde::Serialize;

use super::connz::SubDetail;
use super::time::rfc3339_nano;
use super::{BadRequest, Monitor, Params, json};
use crate::router::Subscription;

#[derive(Serialize)]
pub(crate) struct Subsz {
    pub server_id: String,
    pub now: String,
    #[serde(flatten)]
    pub stats: SublistStats,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    #[serde(rename = "subscriptions_list", skip_serializing_if = "Vec::is_empty")]
    pub subs: Vec<SubDetail>,
}

/// nats-server's `SublistStats`. The match cache is per connection in natrix: `num_cache` sums
/// all connections' caches, and `max_fanout` is the largest fanout ever cached.
#[derive(Serialize)]
pub(crate) struct SublistStats {
    pub num_subscriptions: usize,
    pub num_cache: u64,
    pub num_inserts: u64,
    pub num_removes: u64,
    pub num_matches: u64,
    #[serde(serialize_with = "super::go_float")]
    pub cache_hit_rate: f64,
    pub max_fanout: u64,
    #[serde(serialize_with = "super::go_float")]
    pub avg_fanout: f64,
}

pub(crate) fn stats(monitor: &Monitor) -> SublistStats {
    let router = &monitor.state.router;
    let s = &router.stats;
    let matches = s.matches.load(Ordering::Relaxed);
    let hits = s.cache_hits.load(Ordering::Relaxed);
    let cached = s.cached.load(Ordering::Relaxed).max(0) as u64;
    let fanout = s.cached_fanout.load(Ordering::Relaxed).max(0) as u64;
    SublistStats {
        num_subscriptions: router.count(),
        num_cache: cached,
        num_inserts: s.inserts.load(Ordering::Relaxed),
        num_removes: s.removes.load(Ordering::Relaxed),
        num_matches: matches,
        cache_hit_rate: if matches == 0 {
            0.0
        } else {
            hits as f64 / matches as f64
        },
        max_fanout: s.max_fanout.load(Ordering::Relaxed),
        avg_fanout: if cached == 0 {
            0.0
        } else {
            fanout as f64 / cached as f64
        },
    }
}

pub(crate) async fn handle(
    State(monitor): State<Arc<Monitor>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, BadRequest> {
    monitor.count_request("/subsz");
    let params = Params(query);
    let (list, detail) = params.subs()?;
    let (offset, limit) = params.paging()?;
    let test = params.get("test");
    if let Some(subject) = test
        && !is_valid_literal_subject(subject.as_bytes())
    {
        return Err(BadRequest(format!(
            "invalid test subject, must be valid publish subject: {subject}"
        )));
    }
    let state = &monitor.state;
    let mut subsz = Subsz {
        server_id: state.server_id.clone(),
        now: rfc3339_nano(SystemTime::now()),
        stats: stats(&monitor),
        total: 0,
        offset: 0,
        limit: 1024,
        subs: Vec::new(),
    };
    if list || detail {
        let account = &state.config.account.name;
        let mut subs: Vec<Arc<Subscription>> = {
            let clients: Vec<_> = state.clients.read().values().cloned().collect();
            clients
                .iter()
                .flat_map(|c| c.subs.lock().values().cloned().collect::<Vec<_>>())
                .collect()
        };
        if let Some(subject) = test {
            let matches = state.router.matches(subject.as_bytes());
            let ids: HashSet<u64> = matches
                .plain
                .iter()
                .chain(matches.queues.iter().flat_map(|g| g.members.iter()))
                .map(|s| s.0.id)
                .collect();
            subs.retain(|s| ids.contains(&s.id));
        }
        // nats-server's order is its trie walk; creation order is as good and stable for paging.
        subs.sort_by_key(|s| s.id);
        subsz.total = subs.len();
        subsz.offset = offset;
        subsz.limit = limit;
        let end = offset.saturating_add(limit).min(subs.len());
        subsz.subs = subs[offset.min(end)..end]
            .iter()
            .map(|s| SubDetail {
                account: Some(account.clone()),
                account_tag: Some(account.clone()),
                ..SubDetail::of(s)
            })
            .collect();
    }
    Ok(json(&params, &subsz))
}
