//! What the stream state machine asks storage to do. One command's ops are written in one
//! atomic batch together with the applied position, so a crash never leaves half a command.

use crate::StoredMsg;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Store a new message.
    Append(StoredMsg),
    /// Remove one message (limits, msg delete, workqueue ack, per-subject purge).
    Remove { seq: u64 },
    /// Remove every message with a sequence below `seq` (purge, max_msgs/max_bytes/max_age
    /// trimming of a contiguous prefix).
    RemoveBelow { seq: u64 },
}
