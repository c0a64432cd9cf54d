//! The most recently closed client connections, for `/connz?state=closed`: a bounded ring of
//! snapshots taken when a connection's task ends (nats-server keeps the last 10,000).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::client::Client;

/// nats-server's default `max_closed_clients`.
const MAX_CLOSED: usize = 10_000;
/// Subscriptions kept per closed connection: the ring must stay bounded even for clients with
/// huge numbers of subscriptions.
const MAX_SUBS_PER_CLOSED: usize = 1024;

/// A client connection as it was when it closed.
#[derive(Debug, Clone)]
pub(crate) struct ClosedConn {
    pub cid: u64,
    pub ip: String,
    pub port: u16,
    pub started: SystemTime,
    pub last: SystemTime,
    pub stop: SystemTime,
    pub reason: &'static str,
    pub rtt: Duration,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub num_subs: usize,
    pub subs: Vec<ClosedSub>,
    pub name: String,
    pub lang: String,
    pub version: String,
    /// The CONNECT user name (never a password or token).
    pub user: Option<String>,
    pub tls: Option<crate::client::TlsSession>,
}

#[derive(Debug, Clone)]
pub(crate) struct ClosedSub {
    pub subject: String,
    pub queue: Option<String>,
    pub sid: String,
    pub msgs: u64,
    pub max: u64,
}

#[derive(Debug, Default)]
pub(crate) struct ClosedConnections {
    ring: Mutex<VecDeque<ClosedConn>>,
}

impl ClosedConnections {
    /// Snapshots `client`; call once when its connection has ended, before its subscriptions
    /// are dropped.
    pub fn record(&self, client: &Client) {
        let (reason, out_msgs, out_bytes) = {
            let out = client.out.lock();
            (
                out.closing.map_or("Client Closed", |r| r.as_str()),
                out.out_msgs,
                out.out_bytes,
            )
        };
        let meta = client.meta.lock().clone();
        let (num_subs, subs) = {
            let table = client.subs.lock();
            let mut list: Vec<_> = table.values().collect();
            list.sort_by_key(|s| s.id);
            let subs = list
                .iter()
                .take(MAX_SUBS_PER_CLOSED)
                .map(|s| ClosedSub {
                    subject: String::from_utf8_lossy(&s.subject).into_owned(),
                    queue: s
                        .queue
                        .as_deref()
                        .map(|q| String::from_utf8_lossy(q).into_owned()),
                    sid: String::from_utf8_lossy(&s.sid).into_owned(),
                    msgs: s.delivered.load(Ordering::Relaxed),
                    max: s.max.load(Ordering::Relaxed),
                })
                .collect();
            (table.len(), subs)
        };
        let last_ms = client.last_activity_ms.load(Ordering::Relaxed);
        let conn = ClosedConn {
            cid: client.id,
            ip: client.addr.ip().to_string(),
            port: client.addr.port(),
            started: client.started,
            last: client.started + Duration::from_millis(last_ms),
            stop: SystemTime::now(),
            reason,
            rtt: Duration::from_micros(client.rtt_us.load(Ordering::Relaxed)),
            in_msgs: client.in_msgs.load(Ordering::Relaxed),
            out_msgs,
            in_bytes: client.in_bytes.load(Ordering::Relaxed),
            out_bytes,
            num_subs,
            subs,
            name: meta.name,
            lang: meta.lang,
            version: meta.version,
            user: meta.user,
            tls: meta.tls,
        };
        let mut ring = self.ring.lock();
        if ring.len() >= MAX_CLOSED {
            ring.pop_front();
        }
        ring.push_back(conn);
    }

    pub fn len(&self) -> usize {
        self.ring.lock().len()
    }

    /// The closed connections, oldest first.
    pub fn snapshot(&self) -> Vec<ClosedConn> {
        self.ring.lock().iter().cloned().collect()
    }

    pub fn find(&self, cid: u64) -> Option<ClosedConn> {
        self.ring.lock().iter().find(|c| c.cid == cid).cloned()
    }
}
