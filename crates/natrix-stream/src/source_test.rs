//! The checks against what nats-server 2.15.1 answered for the same configs.

use super::*;

fn source(json: &str) -> StreamSource {
    serde_json::from_str(json).expect("a source object")
}

fn sources(json: &str) -> Vec<StreamSource> {
    serde_json::from_str(json).expect("a sources array")
}

fn err(r: Result<(), ApiError>) -> (u16, u16, String) {
    let e = r.expect_err("refused");
    (e.code, e.err_code, e.description)
}

#[test]
fn mirrors_are_checked_with_nats_servers_codes_and_texts() {
    let no_subjects: &[String] = &[];
    let m = source(r#"{"name":"A"}"#);
    assert_eq!(check(Some(&m), None, no_subjects), Ok(()));
    assert_eq!(
        err(check(Some(&m), None, &["x".to_string()])),
        (400, 10034, "stream mirrors can not contain subjects".into())
    );
    assert_eq!(
        err(check(
            Some(&m),
            Some(&sources(r#"[{"name":"A"}]"#)),
            no_subjects
        )),
        (
            400,
            10031,
            "stream mirrors can not also contain other sources".into()
        )
    );
    let cases = [
        (
            r#"{"name":""}"#,
            400,
            10142,
            "mirrored stream name is invalid",
        ),
        (
            r#"{"name":"A.b"}"#,
            400,
            10142,
            "mirrored stream name is invalid",
        ),
        (
            r#"{"name":"A","filter_subject":"a..x"}"#,
            500,
            10049,
            "subject filter 'a..x' for the mirror invalid subject",
        ),
        (
            r#"{"name":"A","filter_subject":"a.x","subject_transforms":[{"src":"a.*","dest":"b.$1"}]}"#,
            400,
            10150,
            "mirror with multiple subject transforms cannot also have a single subject filter",
        ),
        (
            r#"{"name":"A","subject_transforms":[{"src":"a.*","dest":"b.*"}]}"#,
            400,
            10154,
            "mirror transform: invalid subject",
        ),
        (
            r#"{"name":"A","subject_transforms":[{"src":"a..","dest":"b.x"}]}"#,
            400,
            10151,
            "mirror transform source: invalid subject a..",
        ),
        (
            r#"{"name":"A","subject_transforms":[{"src":"a.>","dest":"b.>"},{"src":"a.x","dest":"c"}]}"#,
            400,
            10152,
            "mirror subject filters can not overlap",
        ),
    ];
    for (json, code, err_code, text) in cases {
        assert_eq!(
            err(check(Some(&source(json)), None, no_subjects)),
            (code, err_code, text.to_string()),
            "{json}"
        );
    }
    for json in [
        r#"{"name":"A","filter_subject":"a.x"}"#,
        r#"{"name":"A","opt_start_seq":5,"opt_start_time":"2024-01-01T00:00:00Z"}"#,
        r#"{"name":"A","subject_transforms":[{"src":"a.*","dest":"b.$1"}]}"#,
    ] {
        assert_eq!(
            check(Some(&source(json)), None, no_subjects),
            Ok(()),
            "{json}"
        );
    }
}

#[test]
fn sources_are_checked_with_nats_servers_codes_and_texts() {
    let cases = [
        (
            r#"[{"name":"A"},{"name":"A"}]"#,
            400,
            10140,
            "duplicate source configuration detected",
        ),
        (
            r#"[{"name":"A","filter_subject":">"},{"name":"A"}]"#,
            400,
            10140,
            "duplicate source configuration detected",
        ),
        (
            r#"[{"name":""}]"#,
            400,
            10141,
            "sourced stream name is invalid",
        ),
        (
            r#"[{"name":"A b"}]"#,
            400,
            10141,
            "sourced stream name is invalid",
        ),
        (
            r#"[{"name":"A","filter_subject":"a..x"}]"#,
            500,
            10049,
            "subject filter 'a..x' for the source: invalid subject",
        ),
        (
            r#"[{"name":"A","subject_transforms":[{"src":"a.*","dest":"b.*"}]}]"#,
            400,
            10146,
            "source transform: invalid subject",
        ),
        (
            r#"[{"name":"A","subject_transforms":[{"src":"a..","dest":"b.x"}]}]"#,
            400,
            10145,
            "source transform source: invalid subject a..",
        ),
        (
            r#"[{"name":"A","filter_subject":"a.x","subject_transforms":[{"src":"a.*","dest":"b.$1"}]}]"#,
            400,
            10144,
            "source with multiple subject transforms cannot also have a single subject filter",
        ),
        (
            r#"[{"name":"A","subject_transforms":[{"src":"a.>","dest":"b.>"},{"src":"a.x.>","dest":"c.>"}]}]"#,
            400,
            10147,
            "source filters can not overlap",
        ),
    ];
    for (json, code, err_code, text) in cases {
        assert_eq!(
            err(check(None, Some(&sources(json)), &[])),
            (code, err_code, text.to_string()),
            "{json}"
        );
    }
    for json in [
        r#"[{"name":"A","filter_subject":"a.x"},{"name":"A","filter_subject":"a.y"}]"#,
        r#"[{"name":"A","filter_subject":"a.>"},{"name":"A","filter_subject":"a.y"}]"#,
        r#"[{"name":"A","subject_transforms":[{"src":"a.*","dest":"b.$1"},{"src":"a.x.>","dest":"c.>"}]}]"#,
        r#"[{"name":"A","subject_transforms":[{"src":"a.x","dest":""}]}]"#,
        r#"[{"name":"X","external":{"api":"$JS.x.API","deliver":""}}]"#,
    ] {
        assert_eq!(check(None, Some(&sources(json)), &[]), Ok(()), "{json}");
    }
}

#[test]
fn a_bad_start_time_is_a_json_error_as_go_decodes_it() {
    let bad = source(r#"{"name":"A","opt_start_time":"garbage"}"#);
    let e = bad.check_start_time_parses().expect_err("not a time");
    assert_eq!(e.err_code, 10025);
    assert_eq!(
        e.description,
        r#"invalid JSON: parsing time "garbage" as "2006-01-02T15:04:05Z07:00": cannot parse "garbage" as "2006""#
    );
    let good = source(r#"{"name":"A","opt_start_time":"2024-01-01T00:00:00Z"}"#);
    assert_eq!(good.opt_start_time_ns(), Some(1_704_067_200_000_000_000));
}

#[test]
fn a_sourced_message_says_where_it_came_from_and_drops_the_origins_checks() {
    let whole = source(r#"{"name":"A"}"#);
    assert_eq!(whole.source_key(), "A > >");
    let filtered = source(r#"{"name":"A","filter_subject":"a.x"}"#);
    assert_eq!(filtered.source_key(), "A a.x >");
    let transformed = source(r#"{"name":"A","subject_transforms":[{"src":"a.*","dest":"b.$1"}]}"#);
    assert_eq!(transformed.source_key(), "A a.* b.$1");

    let own = b"NATS/1.0\r\nX: 1\r\nNats-Expected-Last-Sequence: 4\r\nNats-Msg-Id: m\r\n\r\n";
    let headers = sourced_headers(Some(own), &whole.source_key(), 12, b"a.0");
    assert_eq!(
        &headers[..],
        &b"NATS/1.0\r\nX: 1\r\nNats-Msg-Id: m\r\nNats-Stream-Source: A 12 > > a.0\r\n\r\n"[..]
    );
    assert_eq!(
        sourced_from(&headers),
        Some(SourcedFrom {
            key: "A > >".into(),
            seq: 12
        })
    );
    let bare = sourced_headers(None, &filtered.source_key(), 3, b"a.x");
    assert_eq!(
        &bare[..],
        &b"NATS/1.0\r\nNats-Stream-Source: A 3 a.x > a.x\r\n\r\n"[..]
    );
    assert_eq!(sourced_from(b"NATS/1.0\r\nX: 1\r\n\r\n"), None);
}
