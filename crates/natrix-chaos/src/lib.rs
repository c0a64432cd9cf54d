//! The pure parts of the chaos suite (`docs/reliability.md`): the history a run records, the
//! seeded schedule of faults, the network topology of a partition, and the checker that judges a
//! history against what every replica finally holds. Nothing here starts a process or opens a
//! socket; the `natrix-chaos` binary does that and hands its records to these functions, so
//! every rule is unit-tested on small hand-made histories.

pub mod checker;
pub mod history;
pub mod schedule;
pub mod topology;

/// The stream the publishers write and the consumers read.
pub const STREAM: &str = "CHAOS";
/// Subjects of [`STREAM`]: `chaos.<publisher>`.
pub const STREAM_SUBJECTS: &str = "chaos.>";
/// The durable pull consumer of [`STREAM`].
pub const CONSUMER: &str = "C1";
/// The key-value bucket of the CAS writers; its stream is `KV_<bucket>`.
pub const KV_BUCKET: &str = "CHAOSKV";
/// The stream behind [`KV_BUCKET`].
pub const KV_STREAM: &str = "KV_CHAOSKV";
