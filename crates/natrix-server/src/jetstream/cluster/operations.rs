//! Operator requests on a running cluster: a stream leader, a consumer leader or the meta leader
//! handing its group to another voter (`$JS.API.STREAM.LEADER.STEPDOWN.<stream>`,
//! `$JS.API.CONSUMER.LEADER.STEPDOWN.<stream>.<consumer>`, `$JS.API.META.LEADER.STEPDOWN`),
//! answered with nats-server's responses and error codes, and the meta group as `/jsz` and
//! `/healthz` describe it.

use natrix_cluster::META_GROUP_ID;
use natrix_raft::TransferLeadershipError;
use natrix_raft::WatchReceiver;
use natrix_stream::ApiError;

use super::{JsCluster, jetstream_peers, not_available, not_leader};
use crate::jetstream::JetStream;
use crate::jetstream::api::{ApiResponse, error_response};
use crate::state::ServerState;

/// nats-server's `JSClusterRequiredErr` (10010): the request needs clustered JetStream.
fn cluster_required() -> ApiError {
    ApiError::new(503, 10010, "JetStream clustering support required")
}

/// nats-server's `JSRaftGeneralErrF` (10041): the hand-over itself failed.
fn raft_general(err: &TransferLeadershipError) -> ApiError {
    ApiError::new(500, 10041, err.to_string())
}

/// nats-server's `isEmptyRequest`: no payload, or a JSON object without fields.
fn is_empty_request(payload: &[u8]) -> bool {
    payload.is_empty()
        || serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(payload)
            .is_ok_and(|fields| fields.is_empty())
}

/// `{"type":..,"success":true}`, or the error.
fn answer(kind: &str, result: Result<(), ApiError>) -> ApiResponse {
    match result {
        Ok(()) => ApiResponse::Json(format!(
            "{{\"type\":\"io.nats.jetstream.api.v1.{kind}_response\",\"success\":true}}"
        )),
        Err(err) => error_response(kind, &err),
    }
}

/// `$JS.API.STREAM.LEADER.STEPDOWN.<stream>`, on the stream's leader (the API front hands the
/// request there): the leader hands the group to the most up-to-date other replica and answers
/// once that one leads. A single-replica stream has no one to hand over to; nats-server answers
/// it with success all the same, and so does this.
pub(crate) async fn stream_leader_stepdown(
    js: &JetStream,
    name: &str,
    payload: &[u8],
) -> ApiResponse {
    const KIND: &str = "stream_leader_stepdown";
    answer(KIND, handover_stream(js, name, payload).await)
}

/// Hands a replicated stream's group from this node (its leader) to the most up-to-date other
/// replica and resolves once that one leads.
async fn handover_stream(js: &JetStream, name: &str, payload: &[u8]) -> Result<(), ApiError> {
    {
        let cluster = js.cluster().ok_or_else(cluster_required)?;
        if cluster.meta_leader().is_none() {
            return Err(not_available());
        }
        let assignment = cluster
            .assignment(name)
            .ok_or_else(ApiError::stream_not_found)?;
        if !is_empty_request(payload) {
            return Err(ApiError::bad_request());
        }
        // The request reaches a replica that is not the leader only when no leader was found
        // to hand it to.
        let host = js
            .stream(name)
            .filter(|h| h.replica.as_ref().map(|r| r.group_id) == Some(assignment.group_id))
            .ok_or_else(not_available)?;
        match host.leader() {
            None => return Err(not_available()),
            Some(leader) if leader != cluster.node_id => return Err(not_leader()),
            Some(_) => {}
        }
        match cluster
            .raft
            .transfer_leadership(assignment.group_id, None)
            .await
        {
            Ok(to) => {
                tracing::info!(
                    "JetStream stream '{name}': leadership handed to {}",
                    cluster.node_name(to)
                );
                Ok(())
            }
            Err(TransferLeadershipError::NoOtherVoter { .. }) => Ok(()),
            Err(err) => {
                tracing::warn!("JetStream stream '{name}': leader stepdown: {err}");
                Err(raft_general(&err))
            }
        }
    }
}

/// `$JS.API.CONSUMER.LEADER.STEPDOWN.<stream>.<consumer>`, on the stream's leader. A consumer
/// of a replicated stream runs where the stream's leader is (its state goes through the stream's
/// log), so its leader steps down by handing the stream's group to another replica; the consumer
/// goes on there from its replicated state, as do the stream's other consumers.
pub(crate) async fn consumer_leader_stepdown(
    js: &JetStream,
    stream: &str,
    consumer: &str,
    payload: &[u8],
) -> ApiResponse {
    const KIND: &str = "consumer_leader_stepdown";
    let known = js.cluster().is_none()
        || js
            .stream(stream)
            .is_some_and(|host| host.consumer(consumer).is_some());
    if !known {
        let err = if js.stream(stream).is_some() {
            ApiError::consumer_not_found()
        } else {
            ApiError::stream_not_found()
        };
        return error_response(KIND, &err);
    }
    let result = handover_stream(js, stream, payload).await;
    answer(KIND, result)
}

/// `$JS.API.META.LEADER.STEPDOWN`, on the meta leader (the API front hands the request there):
/// it hands the meta group to the most up-to-date other voter. Choosing the new leader by
/// placement (a non-empty request) is not supported: such a request is refused as a bad request.
pub(crate) async fn meta_leader_stepdown(js: &JetStream, payload: &[u8]) -> ApiResponse {
    const KIND: &str = "meta_leader_stepdown";
    let result = async {
        let cluster = js.cluster().ok_or_else(cluster_required)?;
        match cluster.meta_leader() {
            None => return Err(not_available()),
            Some(leader) if leader != cluster.node_id => return Err(not_leader()),
            Some(_) => {}
        }
        if !is_empty_request(payload) {
            return Err(ApiError::bad_request());
        }
        match cluster.raft.transfer_leadership(META_GROUP_ID, None).await {
            Ok(to) => {
                tracing::info!(
                    "JetStream cluster: meta leadership handed to {}",
                    cluster.node_name(to)
                );
                Ok(())
            }
            Err(err) => {
                tracing::warn!("JetStream cluster: meta leader stepdown: {err}");
                Err(raft_general(&err))
            }
        }
    }
    .await;
    answer(KIND, result)
}

/// The body of `STREAM.PEER.REMOVE` and `SERVER.REMOVE`: a server by name, or (servers only)
/// by its peer id.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct PeerRequest {
    peer: String,
    peer_id: String,
}

impl PeerRequest {
    fn parse(payload: &[u8]) -> Result<PeerRequest, ApiError> {
        let request: PeerRequest = crate::jetstream::stream_api::parse_body(payload)?;
        if request.peer.is_empty() && request.peer_id.is_empty() {
            return Err(ApiError::bad_request());
        }
        Ok(request)
    }

    /// The node the request names, if the meta group knows it.
    fn node(&self, cluster: &JsCluster) -> Option<u64> {
        let meta = cluster.meta_state.read();
        meta.peers
            .values()
            .find(|p| {
                (!self.peer.is_empty() && p.name == self.peer)
                    || (!self.peer_id.is_empty()
                        && (format!("{:016x}", p.node_id) == self.peer_id
                            || p.node_id.to_string() == self.peer_id))
            })
            .map(|p| p.node_id)
    }
}

/// `$JS.API.STREAM.PEER.REMOVE.<stream>` `{"peer":"<server>"}`, on the stream's leader: the
/// server's replica is replaced by one on another suitable node (placement as for a new
/// stream); with none left to take it the stream goes on with one replica fewer. The leader
/// then moves the group (see `membership`).
pub(crate) async fn stream_peer_remove(js: &JetStream, name: &str, payload: &[u8]) -> ApiResponse {
    const KIND: &str = "stream_remove_peer";
    let result = async {
        let cluster = js.cluster().ok_or_else(cluster_required)?;
        let assignment = cluster
            .assignment(name)
            .ok_or_else(ApiError::stream_not_found)?;
        let request = PeerRequest::parse(payload)?;
        let removed = request
            .node(cluster)
            .filter(|id| assignment.has_peer(*id))
            .ok_or_else(ApiError::cluster_peer_not_member)?;
        let host = js.stream(name).ok_or_else(not_available)?;
        let exclude = std::collections::BTreeSet::from([removed]);
        let peers = match cluster.replan(&assignment, &host.config(), host.leader(), exclude) {
            Ok(peers) => peers,
            Err(_) => {
                let rest: Vec<u64> = assignment
                    .peers
                    .iter()
                    .copied()
                    .filter(|p| *p != removed)
                    .collect();
                if rest.is_empty() {
                    return Err(ApiError::insufficient_resources());
                }
                rest
            }
        };
        cluster.set_stream_peers(name, peers).await
    }
    .await;
    answer(KIND, result)
}

/// `$JS.API.SERVER.REMOVE` `{"peer":"<server>"}` or `{"peer_id":"<id>"}`, on the meta leader:
/// the server leaves the meta group and every stream assignment; each stream that had a
/// replica there gets a replacement on another suitable node (a stream whose only replica it
/// was has none left to copy from and keeps no peer). Meant for a server that is gone for
/// good: a removed server that is still running joins again as a new, empty member.
pub(crate) async fn server_remove(js: &JetStream, payload: &[u8]) -> ApiResponse {
    const KIND: &str = "meta_server_remove";
    let result = async {
        let cluster = js.cluster().ok_or_else(cluster_required)?;
        match cluster.meta_leader() {
            None => return Err(not_available()),
            Some(leader) if leader != cluster.node_id => return Err(not_leader()),
            Some(_) => {}
        }
        let request = PeerRequest::parse(payload)?;
        let removed = request
            .node(cluster)
            .ok_or_else(ApiError::cluster_server_not_member)?;
        let reply = cluster
            .propose(&natrix_cluster::MetaCommand::RemovePeer { node_id: removed })
            .await?;
        cluster.remove_meta_voter(removed).await;
        if let natrix_cluster::MetaReply::PeerRemoved { streams, .. } = reply {
            for name in streams {
                let Some(assignment) = cluster.assignment(&name) else {
                    continue;
                };
                if assignment.peers.is_empty() {
                    tracing::warn!("JetStream stream '{name}': its only replica was removed");
                    continue;
                }
                let Ok(config) = assignment.stream_config() else {
                    continue;
                };
                let exclude = std::collections::BTreeSet::from([removed]);
                match cluster.replan(&assignment, &config, None, exclude) {
                    Ok(peers) => cluster.set_stream_peers(&name, peers).await?,
                    Err(err) => tracing::warn!(
                        "JetStream stream '{name}': no replacement replica: {}",
                        err.description
                    ),
                }
            }
        }
        Ok(())
    }
    .await;
    answer(KIND, result)
}

/// The meta group as this node sees it (`/jsz`'s `meta_cluster`).
pub(crate) struct MetaClusterView {
    pub name: String,
    /// The meta leader's server name, when one is known.
    pub leader: Option<String>,
    /// This node's id in the group.
    pub peer: String,
    /// Voters of the meta group; before it forms, the nodes it would be formed with.
    pub cluster_size: usize,
}

/// Why this node is not ready to serve JetStream (`/healthz`), in nats-server's words.
pub(crate) fn meta_unready_reason(cluster: &JsCluster) -> Option<&'static str> {
    if cluster.meta_leader().is_none() {
        Some("JetStream has not established contact with a meta leader")
    } else if !cluster.meta_caught_up() {
        Some("JetStream is not current with the meta leader")
    } else {
        None
    }
}

/// How many committed log entries a replica may still have to apply and count as current: a
/// follower under load is always a few entries behind; one catching up after a restart is not.
const CURRENT_LAG: u64 = 64;

/// The first replicated stream on this node whose replica is not current (`/healthz`), in
/// nats-server's words: it knows no leader, or it is more than [`CURRENT_LAG`] entries behind
/// what its leader committed (a replica still catching up after a restart).
pub(crate) fn stream_unready_reason(js: &JetStream) -> Option<String> {
    js.streams().into_iter().find_map(|host| {
        let raft = host.raft()?;
        let metrics = raft.metrics().borrow_watched().clone();
        let applied = metrics.last_applied.map_or(0, |id| id.index);
        let committed = metrics.cluster_committed.map_or(0, |id| id.index);
        let current =
            metrics.current_leader.is_some() && committed.saturating_sub(applied) <= CURRENT_LAG;
        (!current).then(|| {
            format!(
                "JetStream stream '{} > {}' is not current",
                js.account.name, host.name
            )
        })
    })
}

impl JsCluster {
    /// A node's server name: from the meta state, the meta group's membership, or its id.
    pub fn node_name(&self, node_id: u64) -> String {
        self.peer_name(node_id)
            .or_else(|| self.meta_member(node_id).map(|n| n.name))
            .unwrap_or_else(|| format!("{node_id:016x}"))
    }

    /// The meta group as this node sees it.
    pub fn meta_cluster_view(&self, state: &ServerState) -> MetaClusterView {
        let voters = {
            let metrics = self.meta.metrics().borrow_watched().clone();
            metrics.membership_config.membership().voter_ids().count()
        };
        MetaClusterView {
            name: self.cluster_name.clone(),
            leader: self.meta_leader().map(|id| self.node_name(id)),
            peer: format!("{:016x}", self.node_id),
            cluster_size: if voters > 0 {
                voters
            } else {
                1 + state
                    .router
                    .mesh()
                    .map_or(0, |mesh| jetstream_peers(mesh).len())
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_requests_are_those_nats_server_accepts_as_empty() {
        assert!(is_empty_request(b""));
        assert!(is_empty_request(b"{}"));
        assert!(is_empty_request(b" { } "));
        assert!(!is_empty_request(b"{\"placement\":{}}"));
        assert!(!is_empty_request(b"[]"));
        assert!(!is_empty_request(b"nonsense"));
    }
}
