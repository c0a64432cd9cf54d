//! Tests of pull requests, the waiting queue and status replies (header blocks as captured
//! from nats-server 2.9.10 over raw TCP).

use super::*;

const SEC: i64 = 1_000_000_000;

fn queue(json: &str) -> WaitingQueue {
    let cfg = ConsumerConfig::from_json(json.as_bytes()).expect("config");
    WaitingQueue::new(&ConsumerConfig {
        max_waiting: if cfg.max_waiting == 0 {
            512
        } else {
            cfg.max_waiting
        },
        ..cfg
    })
}

fn req(json: &str) -> PullRequest {
    PullRequest::from_json(json.as_bytes()).expect("valid pull request")
}

fn text(s: &StatusReply) -> String {
    String::from_utf8(s.header_bytes()).expect("ASCII headers")
}

#[test]
fn pull_bodies_parse_as_nats_server_reads_them() {
    assert_eq!(req(""), PullRequest::default());
    assert_eq!(req("5").batch, 5);
    assert_eq!(req("junk").batch, 1);
    assert_eq!(req(r#"{"batch":0}"#).batch, 1);
    assert_eq!(
        req(
            r#"{"batch":3,"expires":1000000000,"no_wait":true,"max_bytes":100,"idle_heartbeat":400000000}"#
        ),
        PullRequest {
            batch: 3,
            expires_ns: SEC,
            no_wait: true,
            max_bytes: 100,
            idle_heartbeat_ns: 400_000_000
        }
    );
    let hb = PullRequest::from_json(br#"{"batch":1,"idle_heartbeat":500000000}"#);
    assert_eq!(
        hb,
        Err(StatusReply::BadRequest("heartbeat value too large".into()))
    );
    let bad = PullRequest::from_json(b"{bad").expect_err("bad JSON");
    assert!(text(&bad).starts_with("NATS/1.0 400 Bad Request - "));
}

#[test]
fn status_replies_are_byte_exact() {
    let cases = [
        (StatusReply::NoMessages, "NATS/1.0 404 No Messages\r\n\r\n"),
        (
            StatusReply::RequestTimeout {
                pending_msgs: 3,
                pending_bytes: 0,
            },
            "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 3\r\nNats-Pending-Bytes: 0\r\n\r\n",
        ),
        (
            StatusReply::ExceededMaxWaiting,
            "NATS/1.0 409 Exceeded MaxWaiting\r\n\r\n",
        ),
        (
            StatusReply::ExceededMaxRequestBatch(2),
            "NATS/1.0 409 Exceeded MaxRequestBatch of 2\r\n\r\n",
        ),
        (
            StatusReply::ExceededMaxRequestExpires(SEC),
            "NATS/1.0 409 Exceeded MaxRequestExpires of 1s\r\n\r\n",
        ),
        (
            StatusReply::ExceededMaxRequestMaxBytes(10),
            "NATS/1.0 409 Exceeded MaxRequestMaxBytes of 10\r\n\r\n",
        ),
        (
            StatusReply::MessageSizeExceedsMaxBytes {
                pending_msgs: 4,
                pending_bytes: 38,
            },
            "NATS/1.0 409 Message Size Exceeds MaxBytes\r\nNats-Pending-Messages: 4\r\nNats-Pending-Bytes: 38\r\n\r\n",
        ),
        (
            StatusReply::ConsumerDeleted,
            "NATS/1.0 409 Consumer Deleted\r\n\r\n",
        ),
        (
            StatusReply::LeadershipChange,
            "NATS/1.0 409 Leadership Change\r\n\r\n",
        ),
        (
            StatusReply::ConsumerIsPushBased,
            "NATS/1.0 409 Consumer is push based\r\n\r\n",
        ),
        (
            StatusReply::BadRequest("heartbeat value too large".into()),
            "NATS/1.0 400 Bad Request - heartbeat value too large\r\n\r\n",
        ),
        (
            StatusReply::IdleHeartbeat {
                last: SequencePair {
                    consumer_seq: 4,
                    stream_seq: 4,
                },
            },
            "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 4\r\nNats-Last-Stream: 4\r\n\r\n",
        ),
    ];
    for (status, want) in cases {
        assert_eq!(text(&status), want);
    }
}

#[test]
fn requests_over_the_consumers_limits_are_refused() {
    let mut q = queue(r#"{"max_batch":2,"max_expires":1000000000,"max_bytes":10}"#);
    assert_eq!(
        q.push(req(r#"{"batch":3}"#), "r", 0, 0),
        Err(StatusReply::ExceededMaxRequestBatch(2))
    );
    assert_eq!(
        q.push(req(r#"{"expires":2000000000}"#), "r", 0, 0),
        Err(StatusReply::ExceededMaxRequestExpires(SEC))
    );
    assert_eq!(
        q.push(req(r#"{"max_bytes":20}"#), "r", 0, 0),
        Err(StatusReply::ExceededMaxRequestMaxBytes(10))
    );
    assert!(q.is_empty());
}

#[test]
fn the_queue_is_bounded_by_max_waiting() {
    let mut q = queue(r#"{"max_waiting":1}"#);
    q.push(req(r#"{"expires":2000000000}"#), "a", 0, 0)
        .expect("queued");
    assert_eq!(
        q.push(req(r#"{"expires":1000000000}"#), "b", 0, 0),
        Err(StatusReply::ExceededMaxWaiting)
    );
    // Once the first has expired it makes room, and its 408 comes back.
    let closed = q.push(req("1"), "c", 2 * SEC, 0).expect("queued");
    assert_eq!(
        closed,
        vec![(
            "a".to_string(),
            StatusReply::RequestTimeout {
                pending_msgs: 1,
                pending_bytes: 0
            }
        )]
    );
    assert_eq!(q.len(), 1);
}

#[test]
fn no_wait_with_nothing_available_is_answered_404_at_once() {
    let mut q = queue("{}");
    assert_eq!(
        q.push(req(r#"{"batch":1,"no_wait":true}"#), "r", 0, 0),
        Err(StatusReply::NoMessages)
    );
    q.push(req(r#"{"batch":5,"no_wait":true}"#), "r", 0, 2)
        .expect("queued");
    assert_eq!(q.next_waiting(10, 0).reply.as_deref(), Some("r"));
    assert_eq!(q.next_waiting(10, 0).reply.as_deref(), Some("r"));
    // nats-server 2.9.10: a no_wait request that got messages ends with 408 and what is left.
    assert_eq!(
        q.end_of_messages(),
        vec![(
            "r".to_string(),
            StatusReply::RequestTimeout {
                pending_msgs: 3,
                pending_bytes: 0
            }
        )]
    );
    assert!(q.is_empty());
}

#[test]
fn requests_take_messages_in_turn_until_their_batch_is_done() {
    let mut q = queue("{}");
    q.push(req("2"), "a", 0, 0).expect("queued");
    q.push(req("1"), "b", 0, 0).expect("queued");
    let order: Vec<Option<String>> = (0..4).map(|_| q.next_waiting(1, 0).reply).collect();
    assert_eq!(
        order,
        vec![Some("a".into()), Some("b".into()), Some("a".into()), None]
    );
}

#[test]
fn a_message_larger_than_the_remaining_bytes_closes_the_request_with_409() {
    let mut q = queue("{}");
    q.push(req(r#"{"batch":5,"max_bytes":100}"#), "a", 0, 0)
        .expect("queued");
    assert_eq!(q.next_waiting(62, 0).reply.as_deref(), Some("a"));
    let next = q.next_waiting(44, 0);
    assert_eq!(next.reply, None, "the message stays for the next request");
    assert_eq!(
        next.closed,
        vec![(
            "a".to_string(),
            StatusReply::MessageSizeExceedsMaxBytes {
                pending_msgs: 4,
                pending_bytes: 38
            }
        )]
    );
}

#[test]
fn expiry_answers_408_and_heartbeats_are_sent_while_waiting() {
    let mut q = queue("{}");
    q.push(
        req(r#"{"batch":2,"expires":1100000000,"idle_heartbeat":400000000}"#),
        "hb",
        0,
        0,
    )
    .expect("queued");
    assert_eq!(q.next_deadline(), Some(400_000_000));
    let last = SequencePair::default();
    assert_eq!(
        q.expire(400_000_000, last),
        vec![("hb".to_string(), StatusReply::IdleHeartbeat { last })]
    );
    assert_eq!(q.next_deadline(), Some(800_000_000));
    assert_eq!(q.expire(800_000_000, last).len(), 1);
    assert_eq!(
        q.expire(1_100_000_000, last),
        vec![(
            "hb".to_string(),
            StatusReply::RequestTimeout {
                pending_msgs: 2,
                pending_bytes: 0
            }
        )]
    );
    assert_eq!(q.next_deadline(), None);
}

#[test]
fn deleting_the_consumer_closes_every_waiting_request() {
    let mut q = queue("{}");
    q.push(req("1"), "a", 0, 0).expect("queued");
    q.push(req("1"), "b", 0, 0).expect("queued");
    let closed = q.close_all(&StatusReply::ConsumerDeleted);
    assert_eq!(closed.len(), 2);
    assert!(closed.iter().all(|c| c.1 == StatusReply::ConsumerDeleted));
    assert!(q.is_empty());
}

#[test]
fn ack_subjects_have_nats_server_29_tokens_and_parse_back() {
    let subject = ack_reply_subject("P", "A", 1, 2, 3, 1_795_664_760_263_524_764, 0);
    assert_eq!(subject, "$JS.ACK.P.A.1.2.3.1795664760263524764.0");
    let parsed = parse_ack_subject(&subject).expect("parses");
    assert_eq!(
        parsed,
        AckSubject {
            stream: "P".into(),
            consumer: "A".into(),
            delivery_count: 1,
            stream_seq: 2,
            consumer_seq: 3,
            timestamp_ns: 1_795_664_760_263_524_764,
            pending: 0
        }
    );
    let v2 = parse_ack_subject("$JS.ACK.hub.ACCHASH.P.A.1.2.3.17.0.tok").expect("2.10 form");
    assert_eq!((v2.stream.as_str(), v2.stream_seq), ("P", 2));
    assert_eq!(parse_ack_subject("$JS.ACK.P.A.x.2.3.4.0"), None);
    assert_eq!(parse_ack_subject("$JS.API.INFO"), None);
}
