//! What the API reports about a stream's contents: `StreamState` (the `state` object of a stream
//! info) and `PubAck` (the reply to a stream publish), with nats-server's JSON, and the
//! RFC 3339 nanosecond timestamps Go prints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;

/// The `state` object of a stream info response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamState {
    pub messages: u64,
    pub bytes: u64,
    pub first_seq: u64,
    /// RFC 3339 UTC with up to nanoseconds; `0001-01-01T00:00:00Z` when the stream is empty.
    pub first_ts: String,
    pub last_seq: u64,
    pub last_ts: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_subjects: u64,
    /// Per-subject counts, only when the info request asked with `subjects_filter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<BTreeMap<String, u64>>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_deleted: u64,
    /// Interior deleted sequences, only when asked with `deleted_details`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Vec<u64>>,
    pub consumer_count: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The reply to a publish that a stream stored (or recognised as a duplicate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubAck {
    pub stream: String,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

impl PubAck {
    /// The exact bytes nats-server 2.15.1 sends: `{"stream":"S","seq":1}`,
    /// `{"stream":"S","domain":"D","seq":1}`, `{"stream":"S","seq":1,"duplicate": true}`
    /// (the space is nats-server's).
    pub fn to_json(&self) -> String {
        self.to_json_in(None)
    }

    /// The JSON as a node of JetStream domain `domain` sends it: named in the ack, as
    /// nats-server does (the ack's own domain, if it has one, comes first).
    pub fn to_json_in(&self, domain: Option<&str>) -> String {
        // Built in one buffer: this runs once per acknowledged publish.
        let mut out = String::with_capacity(self.stream.len() + 48);
        out.push_str("{\"stream\":");
        push_go_json_string(&mut out, &self.stream);
        if let Some(domain) = self.domain.as_deref().or(domain) {
            out.push_str(",\"domain\":");
            push_go_json_string(&mut out, domain);
        }
        out.push_str(",\"seq\":");
        out.push_str(itoa::Buffer::new().format(self.seq));
        if self.duplicate {
            out.push_str(",\"duplicate\": true");
        }
        out.push('}');
        out
    }

    /// A rejected publish: `{"error":{...},"stream":"S","seq":0}` (nats-server 2.15.1; 2.9.10
    /// omits `stream` and `seq`).
    pub fn error_json(stream: &str, error: &ApiError) -> String {
        go_json_escape(format!(
            "{{\"error\":{},\"stream\":{},\"seq\":0}}",
            serde_json::to_string(error).unwrap_or_default(),
            quote(stream)
        ))
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Appends `s` as a JSON string the way Go's `encoding/json` writes it (HTML characters
/// escaped too). Names are almost always plain, so that case is a copy.
fn push_go_json_string(out: &mut String, s: &str) {
    let plain = s
        .bytes()
        .all(|b| b >= 0x20 && !matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&' | 0x7f..));
    if plain {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&go_json_escape(quote(s)));
    }
}

/// Go's `encoding/json` escapes `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026` (so that
/// `"subjects":["orders.>"]` reads `"orders.\u003e"`). In serialized JSON these characters only
/// occur inside strings, so replacing them in the whole text yields the same bytes as Go.
pub(crate) fn go_json_escape(json: String) -> String {
    if !json.contains(['<', '>', '&']) {
        return json;
    }
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Go's zero `time.Time` in RFC 3339, which nats-server prints for an empty stream.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Formats Unix nanoseconds as Go's `time.RFC3339Nano` in UTC (trailing fractional zeros
/// trimmed, no fraction when it is zero).
pub fn rfc3339_nanos(unix_ns: i64) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let nanos = unix_ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Howard Hinnant's days-from-civil inverse: days since 1970-01-01 → (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_like_go_rfc3339nano() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nanos(1_795_655_784_511_727_425),
            "2026-11-26T01:16:24.511727425Z"
        );
        assert_eq!(
            rfc3339_nanos(1_795_655_972_554_167_200),
            "2026-11-26T01:19:32.5541672Z"
        );
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_000),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn pub_ack_bytes_match_nats_server() {
        let mut ack = PubAck {
            stream: "S".into(),
            seq: 1,
            duplicate: false,
            domain: None,
        };
        assert_eq!(ack.to_json(), r#"{"stream":"S","seq":1}"#);
        ack.duplicate = true;
        assert_eq!(ack.to_json(), r#"{"stream":"S","seq":1,"duplicate": true}"#);
        ack.duplicate = false;
        // A node of domain "hub" names it.
        assert_eq!(
            ack.to_json_in(Some("hub")),
            r#"{"stream":"S","domain":"hub","seq":1}"#
        );
        ack.domain = Some("hub".into());
        assert_eq!(ack.to_json(), r#"{"stream":"S","domain":"hub","seq":1}"#);
        assert_eq!(
            PubAck::error_json("P", &ApiError::message_exceeds_maximum()),
            r#"{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"},"stream":"P","seq":0}"#
        );
        let parsed: PubAck = serde_json::from_str(r#"{"stream":"S","seq":1,"duplicate": true}"#)
            .expect("nats-server's duplicate ack is JSON");
        assert!(parsed.duplicate);
    }

    #[test]
    fn pub_ack_names_needing_escapes_are_written_as_go_writes_them() {
        for stream in [
            "plain",
            "a<b",
            "q\"uote",
            "back\\slash",
            "t\u{1}ab",
            "caf\u{e9}",
            "x&y>z",
        ] {
            let ack = PubAck {
                stream: stream.into(),
                seq: 42,
                duplicate: false,
                domain: Some("d<".into()),
            };
            let expected = go_json_escape(format!(
                "{{\"stream\":{},\"domain\":{},\"seq\":42}}",
                quote(stream),
                quote("d<")
            ));
            assert_eq!(ack.to_json(), expected, "stream {stream:?}");
        }
    }

    #[test]
    fn json_escapes_html_characters_like_go() {
        assert_eq!(
            go_json_escape(r#"{"s":["a.>","<&>"]}"#.to_string()),
            r#"{"s":["a.\u003e","\u003c\u0026\u003e"]}"#
        );
        assert_eq!(
            PubAck::error_json(
                "S",
                &ApiError::new(500, 10052, "max age needs to be >= 100ms")
            ),
            r#"{"error":{"code":500,"err_code":10052,"description":"max age needs to be \u003e= 100ms"},"stream":"S","seq":0}"#
        );
    }

    #[test]
    fn empty_state_serialises_like_nats_server() {
        let state = StreamState {
            first_ts: ZERO_TIME.into(),
            last_ts: ZERO_TIME.into(),
            ..StreamState::default()
        };
        assert_eq!(
            serde_json::to_string(&state).expect("state is JSON"),
            r#"{"messages":0,"bytes":0,"first_seq":0,"first_ts":"0001-01-01T00:00:00Z","last_seq":0,"last_ts":"0001-01-01T00:00:00Z","consumer_count":0}"#
        );
    }
}
