//! Streaming parser for client-to-server protocol operations, byte-for-byte compatible with
//! nats-server 2.9's client parser (see `PROTOCOL_NOTES.md` for every quirk it reproduces).
//!
//! The parser never copies: a finished op is split off the front of the read buffer and its
//! fields are `Bytes` slices of it. While an op is incomplete the bytes stay in the buffer and
//! the parser remembers how far it scanned, so a long control line or payload that arrives in
//! many reads is scanned once.

use bytes::{Buf, Bytes, BytesMut};

use crate::args::{parse_size, split_args};
use crate::error::{ParseError, invalid};
use crate::verb::{ArgVerb, BareVerb, VerbMatch, match_verb};

/// Limits the parser enforces while reading control lines and payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserLimits {
    /// Longest control line (verb + arguments, without CRLF) accepted; nats-server default 4096.
    /// As in nats-server, what is measured is the argument part (after the verb and its
    /// separators), and PING/PONG/+OK lines are not limited.
    pub max_control_line: u32,
    /// Largest PUB/HPUB total size accepted; nats-server default 1 MiB.
    pub max_payload: u32,
}

impl Default for ParserLimits {
    fn default() -> Self {
        Self {
            max_control_line: 4096,
            max_payload: 1024 * 1024,
        }
    }
}

/// A PUB or HPUB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub subject: Bytes,
    pub reply: Option<Bytes>,
    /// HPUB only: the whole header block, `NATS/1.0...\r\n\r\n` (exactly `hdr_len` bytes).
    /// Like nats-server, the parser does not validate its content.
    pub headers: Option<Bytes>,
    /// The message body (for HPUB: the bytes after the header block).
    pub payload: Bytes,
}

/// One operation sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// CONNECT with its raw JSON argument.
    Connect(Bytes),
    Pub(Publish),
    Sub {
        subject: Bytes,
        queue: Option<Bytes>,
        sid: Bytes,
    },
    /// `max` is `Some(n)` only for a valid `n > 0`; nats-server treats a missing, zero or
    /// unparsable max alike: unsubscribe now.
    Unsub {
        sid: Bytes,
        max: Option<u64>,
    },
    Ping,
    Pong,
    /// INFO from a client (ignored by the server, as nats-server does for clients).
    Info(Bytes),
    /// +OK from a client.
    Ok,
    /// -ERR from a client, with its text.
    Err(Bytes),
}

/// A PUB/HPUB/HMSG whose control line is parsed; offsets are into the unconsumed buffer.
#[derive(Debug, Clone, Copy)]
struct PendingMsg {
    /// Bytes of the control line including `\n`; the payload starts here.
    line_len: usize,
    subject: (usize, usize),
    reply: Option<(usize, usize)>,
    hdr: Option<usize>,
    size: usize,
    /// HMSG from a client: checked for framing, then dropped.
    discard: bool,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// At the first byte of an operation.
    Start,
    /// Separators after the verb ran past the end of the buffer; `buf[..from]` holds the verb
    /// and separators seen so far (dropped, and `from` reset to 0, if they grow too long).
    Separators { verb: ArgVerb, from: usize },
    /// Control line of `verb` in progress: the argument starts at `arg_start`, and
    /// `buf[..scanned]` holds no `\n` after it; `saw_cr` records a `\r` in the argument.
    Line {
        verb: ArgVerb,
        arg_start: usize,
        scanned: usize,
        saw_cr: bool,
    },
    /// Bare verb consumed; the rest of its line is being consumed up to `\n`.
    SkipLine(BareVerb),
    /// Control line parsed; waiting for payload and CRLF.
    Payload(PendingMsg),
    /// A previous call failed; the connection is to be closed.
    Failed(ParseError),
}

/// Blanks between a verb and its argument kept in the buffer before they are dropped
/// (nats-server accepts any number of them).
const MAX_BUFFERED_SEPARATORS: usize = 4096;

/// Incremental parser state; one per connection.
#[derive(Debug)]
pub struct ClientParser {
    limits: ParserLimits,
    state: State,
    headers: bool,
}

impl ClientParser {
    pub fn new(limits: ParserLimits) -> Self {
        Self {
            limits,
            state: State::Start,
            headers: true,
        }
    }

    pub fn limits(&self) -> ParserLimits {
        self.limits
    }

    /// Whether HPUB is accepted. nats-server accepts it only once the client's CONNECT said
    /// `"headers": true` (otherwise it closes the connection silently); the server should call
    /// this with `ConnectInfo::headers` after CONNECT. Defaults to `true`.
    pub fn set_headers_supported(&mut self, supported: bool) {
        self.headers = supported;
    }

    /// True when no operation is partially parsed (all consumed bytes formed whole ops).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Start)
    }

    /// Parses the next operation from the front of `buf`, consuming exactly its bytes.
    /// `Ok(None)` means more bytes are needed (nothing consumed that would be lost): an
    /// incomplete op stays at the front of `buf`, except a PING/PONG/+OK line (its verb and
    /// ignored tail are consumed as they arrive) and runs of more than 4096 blanks after a
    /// verb, which are dropped.
    /// After an `Err` the connection is to be closed; later calls return the same error.
    ///
    /// Between calls the caller may only append to `buf`.
    pub fn next_op(&mut self, buf: &mut BytesMut) -> Result<Option<ClientOp>, ParseError> {
        let result = self.step(buf);
        if let Err(err) = &result {
            self.state = State::Failed(*err);
        }
        result
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<ClientOp>, ParseError> {
        loop {
            match self.state {
                State::Start => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    match match_verb(buf) {
                        VerbMatch::NeedMore => return Ok(None),
                        VerbMatch::Unknown => return Err(ParseError::UnknownOperation),
                        VerbMatch::Bare(verb, len) => {
                            buf.advance(len);
                            self.state = State::SkipLine(verb);
                        }
                        VerbMatch::Arg(verb, len) => self.skip_separators(buf, verb, len),
                    }
                }
                State::Separators { verb, from } => {
                    if buf.len() <= from {
                        return Ok(None);
                    }
                    self.skip_separators(buf, verb, from);
                }
                State::SkipLine(verb) => match memchr::memchr(b'\n', buf) {
                    Some(nl) => {
                        buf.advance(nl + 1);
                        self.state = State::Start;
                        return Ok(Some(match verb {
                            BareVerb::Ping => ClientOp::Ping,
                            BareVerb::Pong => ClientOp::Pong,
                            BareVerb::Ok => ClientOp::Ok,
                        }));
                    }
                    None => {
                        // nats-server ignores anything after these verbs; so do we, unbuffered.
                        buf.clear();
                        return Ok(None);
                    }
                },
                State::Line {
                    verb,
                    arg_start,
                    scanned,
                    saw_cr,
                } => {
                    if buf.len() < scanned {
                        // Only if the caller broke the contract (removed bytes); wait safely.
                        return Ok(None);
                    }
                    match memchr::memchr(b'\n', &buf[scanned..]) {
                        Some(i) => {
                            let nl = scanned + i;
                            if let Some(op) = self.finish_line(buf, verb, arg_start, nl)? {
                                return Ok(Some(op));
                            }
                        }
                        None => {
                            let saw_cr = saw_cr || memchr::memchr(b'\r', &buf[scanned..]).is_some();
                            let pending = buf.len() - arg_start - usize::from(saw_cr);
                            if pending > self.limits.max_control_line as usize {
                                return Err(ParseError::MaxControlLineExceeded);
                            }
                            self.state = State::Line {
                                verb,
                                arg_start,
                                scanned: buf.len(),
                                saw_cr,
                            };
                            return Ok(None);
                        }
                    }
                }
                State::Payload(msg) => {
                    let end = msg.line_len + msg.size;
                    let need = end + 2;
                    if buf.len() < need {
                        // nats-server rejects a wrong terminator as soon as its first byte arrives.
                        if buf.len() > end && buf[end] != b'\r' {
                            return Err(ParseError::UnknownOperation);
                        }
                        return Ok(None);
                    }
                    if buf[end] != b'\r' || buf[end + 1] != b'\n' {
                        return Err(ParseError::UnknownOperation);
                    }
                    let frame = buf.split_to(need).freeze();
                    self.state = State::Start;
                    if msg.discard {
                        continue;
                    }
                    return Ok(Some(ClientOp::Pub(publish_from_frame(frame, &msg))));
                }
                State::Failed(err) => return Err(err),
            }
        }
    }

    /// Skips spaces and tabs from `from`; sets the state to the argument or to `Separators`.
    fn skip_separators(&mut self, buf: &mut BytesMut, verb: ArgVerb, from: usize) {
        match buf[from..].iter().position(|&b| b != b' ' && b != b'\t') {
            Some(i) => {
                let arg_start = from + i;
                // The argument's first byte is taken as is, even `\r` or `\n` (as nats-server).
                self.state = State::Line {
                    verb,
                    arg_start,
                    scanned: arg_start + 1,
                    saw_cr: false,
                };
            }
            None => {
                // Keep the verb in the buffer (so a caller sees an op start at its front) unless
                // a client sends an absurd run of blanks: then drop them to bound memory.
                let from = if buf.len() > MAX_BUFFERED_SEPARATORS {
                    buf.clear();
                    0
                } else {
                    buf.len()
                };
                self.state = State::Separators { verb, from };
            }
        }
    }

    /// Handles a complete control line `buf[..=nl]` whose argument starts at `arg_start`.
    /// Returns the op if it is complete; otherwise sets the state to `Payload`.
    fn finish_line(
        &mut self,
        buf: &mut BytesMut,
        verb: ArgVerb,
        arg_start: usize,
        nl: usize,
    ) -> Result<Option<ClientOp>, ParseError> {
        // nats-server drops the byte before `\n` if it saw any `\r` after the argument's first
        // byte (normally it is the `\r` of CRLF).
        let drop = if buf[nl - 1] == b'\r' && nl - 1 > arg_start {
            true
        } else {
            memchr::memchr(b'\r', &buf[arg_start + 1..nl]).is_some()
        };
        let arg_end = nl - usize::from(drop);
        if arg_end - arg_start > self.limits.max_control_line as usize {
            return Err(ParseError::MaxControlLineExceeded);
        }
        let line_len = nl + 1;
        let arg = &buf[arg_start..arg_end];
        let abs = |(s, e): (usize, usize)| (arg_start + s, arg_start + e);
        match verb {
            ArgVerb::Pub => {
                let (t, n) = split_args::<3>(arg, false);
                let (subject, reply, size) = match n {
                    2 => (t[0], None, t[1]),
                    3 => (t[0], Some(t[1]), t[2]),
                    _ => return Err(ParseError::InvalidArguments(invalid::PUB_PARSE)),
                };
                let size = parse_size(&arg[size.0..size.1])
                    .ok_or(ParseError::InvalidArguments(invalid::PUB_SIZE))?;
                self.check_payload(size)?;
                self.state = State::Payload(PendingMsg {
                    line_len,
                    subject: abs(subject),
                    reply: reply.map(abs),
                    hdr: None,
                    size,
                    discard: false,
                });
                Ok(None)
            }
            ArgVerb::Hpub => {
                if !self.headers {
                    return Err(ParseError::InvalidArguments(invalid::HPUB_NOT_SUPPORTED));
                }
                let (t, n) = split_args::<4>(arg, false);
                let (subject, reply, hdr, size) = match n {
                    3 => (t[0], None, t[1], t[2]),
                    4 => (t[0], Some(t[1]), t[2], t[3]),
                    _ => return Err(ParseError::InvalidArguments(invalid::HPUB_PARSE)),
                };
                let hdr = parse_size(&arg[hdr.0..hdr.1])
                    .ok_or(ParseError::InvalidArguments(invalid::HPUB_HDR_SIZE))?;
                let size = parse_size(&arg[size.0..size.1])
                    .ok_or(ParseError::InvalidArguments(invalid::HPUB_TOTAL_SIZE))?;
                if hdr > size {
                    return Err(ParseError::InvalidArguments(invalid::HPUB_HDR_TOO_BIG));
                }
                self.check_payload(size)?;
                self.state = State::Payload(PendingMsg {
                    line_len,
                    subject: abs(subject),
                    reply: reply.map(abs),
                    hdr: Some(hdr),
                    size,
                    discard: false,
                });
                Ok(None)
            }
            ArgVerb::Hmsg => {
                self.state = State::Payload(PendingMsg {
                    line_len,
                    subject: (0, 0),
                    reply: None,
                    hdr: None,
                    size: 0,
                    discard: true,
                });
                Ok(None)
            }
            ArgVerb::Sub => {
                let (t, n) = split_args::<3>(arg, true);
                let (subject, queue, sid) = match n {
                    2 => (t[0], None, t[1]),
                    3 => (t[0], Some(t[1]), t[2]),
                    _ => return Err(ParseError::InvalidArguments(invalid::SUB_PARSE)),
                };
                let line = buf.split_to(line_len).freeze();
                self.state = State::Start;
                Ok(Some(ClientOp::Sub {
                    subject: slice(&line, abs(subject)),
                    queue: queue.map(|q| slice(&line, abs(q))),
                    sid: slice(&line, abs(sid)),
                }))
            }
            ArgVerb::Unsub => {
                let (t, n) = split_args::<2>(arg, true);
                let (sid, max) = match n {
                    1 => (t[0], None),
                    2 => (t[0], parse_size(&arg[t[1].0..t[1].1]).filter(|&m| m > 0)),
                    _ => return Err(ParseError::InvalidArguments(invalid::UNSUB_PARSE)),
                };
                let line = buf.split_to(line_len).freeze();
                self.state = State::Start;
                Ok(Some(ClientOp::Unsub {
                    sid: slice(&line, abs(sid)),
                    max: max.map(|m| m as u64),
                }))
            }
            ArgVerb::Connect | ArgVerb::Info | ArgVerb::Err => {
                let mut line = buf.split_to(line_len).freeze();
                line.truncate(arg_end);
                line.advance(arg_start);
                self.state = State::Start;
                Ok(Some(match verb {
                    ArgVerb::Connect => ClientOp::Connect(line),
                    ArgVerb::Info => ClientOp::Info(line),
                    _ => ClientOp::Err(line),
                }))
            }
        }
    }

    fn check_payload(&self, size: usize) -> Result<(), ParseError> {
        if size > self.limits.max_payload as usize {
            return Err(ParseError::MaxPayloadViolation);
        }
        Ok(())
    }
}

fn slice(line: &Bytes, (start, end): (usize, usize)) -> Bytes {
    line.slice(start..end)
}

/// Builds the Publish from its whole frame (control line, payload, CRLF).
fn publish_from_frame(mut frame: Bytes, msg: &PendingMsg) -> Publish {
    let subject = slice(&frame, msg.subject);
    let reply = msg.reply.map(|r| slice(&frame, r));
    frame.truncate(msg.line_len + msg.size);
    frame.advance(msg.line_len);
    let headers = msg.hdr.map(|hdr| frame.split_to(hdr));
    Publish {
        subject,
        reply,
        headers,
        payload: frame,
    }
}

#[cfg(test)]
#[path = "parser_test.rs"]
mod tests;
