//! `/connz`: one entry per client connection with its counters and, on request, its
//! subscriptions and authenticated user. Sorting, paging and the `cid` filter follow
//! nats-server's `Connz()`.

use std::cmp::Reverse;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Serialize;

use super::closed::ClosedConn;
use super::time::{go_duration, rfc3339_nano, uptime};
use super::{BadRequest, GLOBAL_ACCOUNT, Monitor, Params, json};
use crate::client::Client;
use crate::router::Subscription;
use crate::state::ServerState;

#[derive(Serialize)]
pub(crate) struct Connz {
    pub server_id: String,
    pub now: String,
    pub num_connections: usize,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub connections: Vec<ConnInfo>,
}

#[derive(Serialize)]
pub(crate) struct ConnInfo {
    pub cid: u64,
    pub kind: &'static str,
    #[serde(rename = "type")]
    pub conn_type: &'static str,
    pub ip: String,
    pub port: u16,
    pub start: String,
    pub last_activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub rtt: String,
    pub uptime: String,
    pub idle: String,
    pub pending_bytes: u64,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: usize,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher_suite: Option<String>,
    /// Only with `auth=true`. Never a password or token: natrix records the user name alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorized_user: Option<String>,
    /// Only with `auth=true`, for a named account (`$G` is tagged with `name_tag` instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(rename = "subscriptions_list", skip_serializing_if = "Option::is_none")]
    pub subs: Option<Vec<String>>,
    #[serde(
        rename = "subscriptions_list_detail",
        skip_serializing_if = "Option::is_none"
    )]
    pub subs_detail: Option<Vec<SubDetail>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_tag: Option<String>,
    /// Sort keys that the JSON carries only as text.
    #[serde(skip)]
    sort: SortKeys,
}

#[derive(Clone, Copy)]
struct SortKeys {
    last: SystemTime,
    stop: Option<SystemTime>,
    /// Until now, or until the close.
    uptime: Duration,
    rtt: Duration,
}

/// One subscription as nats-server's `SubDetail`; `account` is filled in by /subsz only.
#[derive(Serialize)]
pub(crate) struct SubDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_tag: Option<String>,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qgroup: Option<String>,
    pub sid: String,
    /// natrix counts deliveries per subscription only when it auto-unsubscribes (`UNSUB <sid>
    /// <max>`): a shared counter per delivered message would slow the publish path.
    pub msgs: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub cid: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SubDetail {
    pub fn of(sub: &Subscription) -> Self {
        Self {
            account: None,
            account_tag: None,
            subject: String::from_utf8_lossy(&sub.subject).into_owned(),
            qgroup: sub
                .queue
                .as_deref()
                .map(|q| String::from_utf8_lossy(q).into_owned()),
            sid: String::from_utf8_lossy(&sub.sid).into_owned(),
            msgs: sub.delivered.load(Ordering::Relaxed),
            max: sub.max.load(Ordering::Relaxed),
            cid: sub.client.id,
        }
    }
}

/// `sort=`: only `cid`/`start` are ascending; the rest put the largest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Cid,
    Subs,
    Pending,
    MsgsTo,
    MsgsFrom,
    BytesTo,
    BytesFrom,
    Last,
    Idle,
    Uptime,
    Stop,
    Reason,
    Rtt,
}

impl SortBy {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "" | "cid" | "start" => SortBy::Cid,
            "subs" => SortBy::Subs,
            "pending" => SortBy::Pending,
            "msgs_to" => SortBy::MsgsTo,
            "msgs_from" => SortBy::MsgsFrom,
            "bytes_to" => SortBy::BytesTo,
            "bytes_from" => SortBy::BytesFrom,
            "last" => SortBy::Last,
            "idle" => SortBy::Idle,
            "uptime" => SortBy::Uptime,
            "stop" => SortBy::Stop,
            "reason" => SortBy::Reason,
            "rtt" => SortBy::Rtt,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    Open,
    Closed,
    All,
}

pub(crate) struct ConnzOptions {
    sort: SortBy,
    auth: bool,
    subs: bool,
    subs_detail: bool,
    offset: usize,
    limit: usize,
    cid: u64,
    state: ConnState,
}

impl Default for ConnzOptions {
    fn default() -> Self {
        Self {
            sort: SortBy::Cid,
            auth: false,
            subs: false,
            subs_detail: false,
            offset: 0,
            limit: 1024,
            cid: 0,
            state: ConnState::Open,
        }
    }
}

impl ConnzOptions {
    fn from_params(params: &Params) -> Result<Self, BadRequest> {
        let sort_text = params.get("sort").unwrap_or("");
        let auth = params.bool("auth")?;
        let (subs, subs_detail) = params.subs()?;
        let (offset, mut limit) = params.paging()?;
        let cid = params.uint("cid")?;
        let state = match params.get("state").map(str::to_ascii_lowercase).as_deref() {
            None | Some("open") => ConnState::Open,
            Some("closed") => ConnState::Closed,
            Some("any" | "all") => ConnState::All,
            Some(_) => {
                let raw = params.get("state").unwrap_or_default();
                return Err(BadRequest(format!("Error decoding state for {raw}")));
            }
        };
        let Some(sort) = SortBy::parse(sort_text) else {
            return Err(BadRequest(format!("invalid sorting option: {sort_text}")));
        };
        if sort == SortBy::Stop && state != ConnState::Closed {
            return Err(BadRequest(
                "sort by stop only valid on closed connections".to_string(),
            ));
        }
        if sort == SortBy::Reason && state != ConnState::Closed {
            return Err(BadRequest(
                "sort by reason only valid on closed connections".to_string(),
            ));
        }
        if cid > 0 {
            limit = 1;
        }
        Ok(Self {
            sort,
            auth,
            subs,
            subs_detail,
            offset,
            limit,
            cid,
            state,
        })
    }
}

pub(crate) async fn handle(
    State(monitor): State<Arc<Monitor>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, BadRequest> {
    monitor.count_request("/connz");
    let params = Params(query);
    let options = ConnzOptions::from_params(&params)?;
    Ok(json(&params, &build(&monitor, &options)))
}

pub(crate) fn build(monitor: &Monitor, options: &ConnzOptions) -> Connz {
    let state = &monitor.state;
    let now = SystemTime::now();
    let with_open = options.state != ConnState::Closed;
    let with_closed = options.state != ConnState::Open;
    let (open_total, clients): (usize, Vec<Arc<Client>>) = if with_open {
        let table = state.clients.read();
        let clients = if options.cid > 0 {
            table.get(&options.cid).cloned().into_iter().collect()
        } else {
            table.values().cloned().collect()
        };
        (table.len(), clients)
    } else {
        (0, Vec::new())
    };
    let (closed_total, closed) = if with_closed {
        let closed = if options.cid > 0 {
            state.closed.find(options.cid).into_iter().collect()
        } else {
            state.closed.snapshot()
        };
        (state.closed.len(), closed)
    } else {
        (0, Vec::new())
    };
    let total = open_total + closed_total;
    let account = named_account(state, options);
    let mut infos: Vec<ConnInfo> = clients
        .iter()
        .map(|c| conn_info(c, options, account, now))
        .collect();
    infos.extend(closed.into_iter().map(|c| closed_info(c, options, account)));
    sort(&mut infos, options.sort, now);
    let start = options.offset.min(infos.len());
    let end = options
        .offset
        .saturating_add(options.limit)
        .min(infos.len());
    let connections: Vec<ConnInfo> = infos.drain(start..end).collect();
    Connz {
        server_id: state.server_id.clone(),
        now: rfc3339_nano(now),
        num_connections: connections.len(),
        total,
        offset: options.offset,
        limit: options.limit,
        connections,
    }
}

/// The account name `/connz?auth=true` shows on connections: a named account's (the global
/// account is tagged on open connections with `name_tag` instead), as nats-server 2.9 does.
fn named_account<'a>(state: &'a ServerState, options: &ConnzOptions) -> Option<&'a str> {
    let name = state.config.account.name.as_str();
    (options.auth && name != GLOBAL_ACCOUNT).then_some(name)
}

fn conn_info(
    client: &Client,
    options: &ConnzOptions,
    account: Option<&str>,
    now: SystemTime,
) -> ConnInfo {
    let (pending_bytes, out_msgs, out_bytes) = {
        let out = client.out.lock();
        (out.pending, out.out_msgs, out.out_bytes)
    };
    let meta = client.meta.lock().clone();
    let (num_subs, subs, subs_detail) = {
        let table = client.subs.lock();
        let mut list: Vec<&Arc<Subscription>> = table.values().collect();
        list.sort_by_key(|s| s.id);
        let subs = (options.subs && !list.is_empty()).then(|| {
            list.iter()
                .map(|s| String::from_utf8_lossy(&s.subject).into_owned())
                .collect()
        });
        let detail = (options.subs_detail && !list.is_empty())
            .then(|| list.iter().map(|s| SubDetail::of(s)).collect());
        (table.len(), subs, detail)
    };
    let last =
        client.started + Duration::from_millis(client.last_activity_ms.load(Ordering::Relaxed));
    let rtt = Duration::from_micros(client.rtt_us.load(Ordering::Relaxed));
    // Only the user name recorded at CONNECT is ever shown: never a password or token.
    let authorized_user = if options.auth {
        meta.user.clone().filter(|u| !u.is_empty())
    } else {
        None
    };
    // nats-server tags open connections of the global account under `auth` (closed ones not).
    let name_tag = (options.auth && account.is_none()).then(|| GLOBAL_ACCOUNT.to_string());
    ConnInfo {
        cid: client.id,
        kind: "Client",
        conn_type: "nats",
        ip: client.addr.ip().to_string(),
        port: client.addr.port(),
        start: rfc3339_nano(client.started),
        last_activity: rfc3339_nano(last),
        stop: None,
        reason: None,
        rtt: go_duration(rtt),
        uptime: uptime(now.duration_since(client.started).unwrap_or_default()),
        idle: uptime(now.duration_since(last).unwrap_or_default()),
        pending_bytes,
        in_msgs: client.in_msgs.load(Ordering::Relaxed),
        out_msgs,
        in_bytes: client.in_bytes.load(Ordering::Relaxed),
        out_bytes,
        subscriptions: num_subs,
        name: meta.name,
        lang: meta.lang,
        version: meta.version,
        tls_version: meta.tls.as_ref().map(|t| t.version.clone()),
        tls_cipher_suite: meta.tls.map(|t| t.cipher_suite),
        authorized_user,
        account: account.map(str::to_string),
        subs,
        subs_detail,
        name_tag,
        sort: SortKeys {
            last,
            stop: None,
            uptime: now.duration_since(client.started).unwrap_or_default(),
            rtt,
        },
    }
}

/// A closed connection as nats-server shows it: times frozen at the close, plus `stop` and
/// `reason`.
fn closed_info(c: ClosedConn, options: &ConnzOptions, account: Option<&str>) -> ConnInfo {
    let lived = c.stop.duration_since(c.started).unwrap_or_default();
    let subs = (options.subs && !c.subs.is_empty())
        .then(|| c.subs.iter().map(|s| s.subject.clone()).collect());
    let subs_detail = (options.subs_detail && !c.subs.is_empty()).then(|| {
        c.subs
            .iter()
            .map(|s| SubDetail {
                account: None,
                account_tag: None,
                subject: s.subject.clone(),
                qgroup: s.queue.clone(),
                sid: s.sid.clone(),
                msgs: s.msgs,
                max: s.max,
                cid: c.cid,
            })
            .collect()
    });
    ConnInfo {
        cid: c.cid,
        kind: "Client",
        conn_type: "nats",
        ip: c.ip,
        port: c.port,
        start: rfc3339_nano(c.started),
        last_activity: rfc3339_nano(c.last),
        stop: Some(rfc3339_nano(c.stop)),
        reason: Some(c.reason),
        rtt: go_duration(c.rtt),
        uptime: uptime(lived),
        idle: uptime(c.stop.duration_since(c.last).unwrap_or_default()),
        pending_bytes: 0,
        in_msgs: c.in_msgs,
        out_msgs: c.out_msgs,
        in_bytes: c.in_bytes,
        out_bytes: c.out_bytes,
        subscriptions: c.num_subs,
        name: c.name,
        lang: c.lang,
        version: c.version,
        tls_version: c.tls.as_ref().map(|t| t.version.clone()),
        tls_cipher_suite: c.tls.map(|t| t.cipher_suite),
        authorized_user: if options.auth {
            c.user.filter(|u| !u.is_empty())
        } else {
            None
        },
        account: account.map(str::to_string),
        subs,
        subs_detail,
        name_tag: None,
        sort: SortKeys {
            last: c.last,
            stop: Some(c.stop),
            uptime: lived,
            rtt: c.rtt,
        },
    }
}

/// Orders as nats-server does; ties keep ascending cid so that paging is stable.
fn sort(infos: &mut [ConnInfo], by: SortBy, now: SystemTime) {
    infos.sort_by_key(|c| c.cid);
    let idle = |c: &ConnInfo| now.duration_since(c.sort.last).unwrap_or_default();
    match by {
        SortBy::Cid => {}
        // Most recently closed first.
        SortBy::Stop => infos.sort_by_key(|c| Reverse(c.sort.stop)),
        SortBy::Reason => infos.sort_by_key(|c| c.reason),
        SortBy::Subs => infos.sort_by_key(|c| Reverse(c.subscriptions)),
        SortBy::Pending => infos.sort_by_key(|c| Reverse(c.pending_bytes)),
        SortBy::MsgsTo => infos.sort_by_key(|c| Reverse(c.out_msgs)),
        SortBy::MsgsFrom => infos.sort_by_key(|c| Reverse(c.in_msgs)),
        SortBy::BytesTo => infos.sort_by_key(|c| Reverse(c.out_bytes)),
        SortBy::BytesFrom => infos.sort_by_key(|c| Reverse(c.in_bytes)),
        SortBy::Last => infos.sort_by_key(|c| Reverse(c.sort.last)),
        SortBy::Idle => infos.sort_by_key(|c| Reverse(idle(c))),
        SortBy::Uptime => infos.sort_by_key(|c| c.sort.uptime),
        SortBy::Rtt => infos.sort_by_key(|c| Reverse(c.sort.rtt)),
    }
}

/// Totals over all open connections, for /metrics (`nats_connz_*`).
pub(crate) fn totals(monitor: &Monitor) -> Connz {
    build(monitor, &ConnzOptions::default())
}
