//! The writer task of one connection: swaps the outbound buffer out under the lock and writes it
//! with one syscall per batch, under the write deadline; closes the socket when the client closes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::client::{Client, CloseReason};
use crate::state::ServerState;

/// Capacity above which an idle spare buffer is released instead of kept.
const SPARE_KEEP_MAX: usize = 4 * 1024 * 1024;

/// Generic over the transport (a TCP write half, or one of a TLS stream).
pub(crate) async fn run_writer<W: AsyncWrite + Unpin>(
    state: Arc<ServerState>,
    client: Arc<Client>,
    mut socket: W,
    write_deadline: Duration,
) {
    let mut spare = BytesMut::with_capacity(4096);
    loop {
        let closing = {
            let mut out = client.out.lock();
            if !out.buf.is_empty() {
                std::mem::swap(&mut out.buf, &mut spare);
                None
            } else {
                Some(out.closing)
            }
        };
        match closing {
            None => {
                let len = spare.len() as u64;
                match tokio::time::timeout(write_deadline, socket.write_all(&spare)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        tracing::debug!(cid = client.id, %err, "write error");
                        client.close(CloseReason::WriteError);
                        break;
                    }
                    Err(_) => {
                        tracing::warn!(
                            cid = client.id,
                            "Slow Consumer Detected: WriteDeadline of {:?} exceeded",
                            write_deadline
                        );
                        state.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
                        client.close(CloseReason::SlowConsumerWriteDeadline);
                        break;
                    }
                }
                client.after_write(len);
                spare.clear();
                if spare.capacity() > SPARE_KEEP_MAX {
                    spare = BytesMut::with_capacity(4096);
                }
            }
            Some(Some(_reason)) => break,
            Some(None) => client.writer_wake.notified().await,
        }
    }
    let _ = tokio::time::timeout(write_deadline, socket.shutdown()).await;
}
