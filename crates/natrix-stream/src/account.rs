//! An account's JetStream limits (nats-server's `JetStreamAccountLimits`, set in
//! `accounts { A: { jetstream { ... } } }`) and the checks that apply them to stream and consumer
//! configs and to stored bytes, in nats-server's order and with its error texts. Pure: the
//! caller passes what the account already holds.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::{ApiError, StorageType, StreamConfig};

/// Limits of one account's JetStream use; -1 (or 0 for the counts) means unlimited. Serialises
/// as the `limits` object of `$JS.API.INFO`, field for field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLimits {
    /// Bytes all memory streams may hold together.
    pub max_memory: i64,
    /// Bytes all file streams may hold together.
    pub max_storage: i64,
    pub max_streams: i64,
    /// Consumers per stream (nats-server applies the account's value to each stream).
    pub max_consumers: i64,
    /// Cap and default of every consumer's `max_ack_pending`.
    pub max_ack_pending: i64,
    /// Largest `max_bytes` a memory stream may ask for.
    pub memory_max_stream_bytes: i64,
    /// Largest `max_bytes` a file stream may ask for.
    pub storage_max_stream_bytes: i64,
    /// Every stream must set `max_bytes`.
    pub max_bytes_required: bool,
}

impl Default for AccountLimits {
    /// No limits, as nats-server reports for an account with `jetstream: enabled`.
    fn default() -> AccountLimits {
        AccountLimits {
            max_memory: -1,
            max_storage: -1,
            max_streams: -1,
            max_consumers: -1,
            max_ack_pending: -1,
            memory_max_stream_bytes: -1,
            storage_max_stream_bytes: -1,
            max_bytes_required: false,
        }
    }
}

impl AccountLimits {
    /// The account's limit on bytes stored in `storage` (negative: unlimited).
    pub fn max_store(&self, storage: StorageType) -> i64 {
        match storage {
            StorageType::Memory => self.max_memory,
            StorageType::File => self.max_storage,
        }
    }

    fn max_stream_bytes(&self, storage: StorageType) -> i64 {
        match storage {
            StorageType::Memory => self.memory_max_stream_bytes,
            StorageType::File => self.storage_max_stream_bytes,
        }
    }

    /// Checks a stream config (validated, with defaults) against the limits. `others` are the
    /// account's other streams; `creating` adds the stream-count check, which nats-server makes
    /// first. A stream reserves `max_bytes` on each replica (at least one byte when it sets
    /// none), and all reservations of one storage type must fit that type's limit.
    pub fn check_stream<'a>(
        &self,
        config: &StreamConfig,
        others: impl IntoIterator<Item = &'a StreamConfig>,
        creating: bool,
    ) -> Result<(), ApiError> {
        let others: Vec<&StreamConfig> = others.into_iter().collect();
        if creating && self.max_streams > 0 && others.len() as u64 >= self.max_streams as u64 {
            return Err(ApiError::maximum_streams_limit());
        }
        if self.max_bytes_required && config.max_bytes <= 0 {
            return Err(ApiError::stream_max_bytes_required());
        }
        let max_stream_bytes = self.max_stream_bytes(config.storage);
        if max_stream_bytes > 0 && config.max_bytes > max_stream_bytes {
            return Err(ApiError::stream_max_stream_bytes_exceeded());
        }
        if config.max_consumers > 0
            && self.max_consumers > 0
            && config.max_consumers > self.max_consumers
        {
            return Err(ApiError::maximum_consumers_limit());
        }
        let Ok(max) = u64::try_from(self.max_store(config.storage)) else {
            return Ok(());
        };
        let reserved: u64 = others
            .iter()
            .filter(|s| s.storage == config.storage)
            .map(|s| reservation(s).unwrap_or(0))
            .fold(0, u64::saturating_add);
        let wanted = reservation(config).unwrap_or(replicas(config));
        if reserved.saturating_add(wanted) > max {
            return Err(match config.storage {
                StorageType::Memory => ApiError::memory_resources_exceeded(),
                StorageType::File => ApiError::storage_resources_exceeded(),
            });
        }
        Ok(())
    }

    /// How many consumers `stream` may have: its own `max_consumers`, or the account's when the
    /// stream sets none or the account's is smaller (-1 or 0: unlimited).
    pub fn max_consumers_for(&self, stream: &StreamConfig) -> i64 {
        if stream.max_consumers <= 0
            || (self.max_consumers > 0 && self.max_consumers < stream.max_consumers)
        {
            self.max_consumers
        } else {
            stream.max_consumers
        }
    }

    /// The stream config a new consumer is validated against: the account's `max_ack_pending`
    /// acts as a consumer limit of the stream (cap and default, error 10121), unless the
    /// stream's own limit is smaller.
    pub fn consumer_view<'a>(&self, stream: &'a StreamConfig) -> Cow<'a, StreamConfig> {
        let own = stream.consumer_limits.max_ack_pending;
        if self.max_ack_pending > 0 && (own <= 0 || self.max_ack_pending < own) {
            let mut limited = stream.clone();
            limited.consumer_limits.max_ack_pending = self.max_ack_pending;
            Cow::Owned(limited)
        } else {
            Cow::Borrowed(stream)
        }
    }

    /// Whether `more` bytes of `storage` fit beside the `used` ones (10002 otherwise).
    pub fn check_usage(&self, storage: StorageType, used: u64, more: u64) -> Result<(), ApiError> {
        match u64::try_from(self.max_store(storage)) {
            Ok(max) if used.saturating_add(more) > max => {
                Err(ApiError::account_resources_exceeded())
            }
            _ => Ok(()),
        }
    }
}

fn replicas(config: &StreamConfig) -> u64 {
    u64::try_from(config.num_replicas).unwrap_or(1).max(1)
}

/// The bytes a stream reserves on all its replicas, when it sets `max_bytes`.
fn reservation(config: &StreamConfig) -> Option<u64> {
    u64::try_from(config.max_bytes)
        .ok()
        .filter(|b| *b > 0)
        .map(|b| b.saturating_mul(replicas(config)))
}

#[cfg(test)]
#[path = "account_test.rs"]
mod tests;
