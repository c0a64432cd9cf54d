//! Subject and queue-name validation with nats-server's rules.
//! CONTRACT (used by natrix-server; keep the public API):

/// A subscribe subject: non-empty tokens separated by `.`, no whitespace; `*` and `>` allowed as
/// whole tokens, `>` only last.
pub fn is_valid_subject(subject: &[u8]) -> bool {
    let _ = subject;
    todo!()
}

/// A publish subject: a valid subject without wildcard tokens.
pub fn is_valid_literal_subject(subject: &[u8]) -> bool {
    let _ = subject;
    todo!()
}

/// True if no token of the subject is `*` or `>`.
pub fn subject_is_literal(subject: &[u8]) -> bool {
    let _ = subject;
    todo!()
}

/// A queue group name: non-empty, no whitespace.
pub fn is_valid_queue_name(queue: &[u8]) -> bool {
    let _ = queue;
    todo!()
}
