//! The cluster's metadata (issue 4): which nodes exist, which streams and consumers exist and on
//! which nodes their replicas live, as a deterministic state machine that the meta Raft group
//! applies; and the placement of a stream's replicas. Pure: no I/O, no clock, no tokio.
//!
//! - [`tags`]: a node's placement tags (automatic `arch:` tag + `server_tags`).
//! - [`placement`]: choosing the nodes for a stream's replicas.
//! - [`meta`]: the meta group's state machine ([`MetaState`], [`MetaCommand`]).

pub mod meta;
mod peer;
pub mod placement;
pub mod tags;

pub use meta::{
    ConsumerAssignment, META_GROUP_ID, MetaCommand, MetaError, MetaReply, MetaState,
    StreamAssignment, decode_command, decode_reply, encode_command, encode_reply,
};
pub use peer::{NodeId, PeerInfo};
pub use placement::{MAX_REPLICAS, NoSuitablePeers, PlacementError, PlacementRequest, place};
pub use tags::{arch_tag_for, node_tags};
