//! Until natrix serves streams, a node started with JetStream enabled (`-js`, `jetstream {}`)
//! answers every `$JS.API.>` request with nats-server's API error for an account without
//! JetStream, so clients fail fast with a clear error instead of timing out.

use std::sync::Arc;

use natrix_subject::TrieError;

use crate::internal::InternalHandler;
use crate::state::ServerState;

/// nats-server's reply when JetStream is not available to the requesting account.
const NOT_ENABLED: &[u8] = br#"{"type":"io.nats.jetstream.api.v1.error_response","error":{"code":503,"err_code":10039,"description":"jetstream not enabled for account"}}"#;

pub(crate) fn serve(state: &Arc<ServerState>) -> Result<(), TrieError> {
    let weak = Arc::downgrade(state);
    state.subscribe_internal(
        "$JS.API.>",
        None,
        InternalHandler::new(move |msg| {
            let (Some(state), Some(reply)) = (weak.upgrade(), msg.reply) else {
                return;
            };
            tracing::debug!(
                cid = msg.client_id,
                subject = %String::from_utf8_lossy(msg.subject),
                "JetStream API request while JetStream is unavailable"
            );
            state.publish_internal(reply, None, None, NOT_ENABLED);
        }),
    )?;
    Ok(())
}
