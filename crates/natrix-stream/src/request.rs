//! The optional JSON bodies of JetStream API requests (info, names, list, purge, message get and
//! delete, peer remove): decoded as Go's decoder does, so that what async-nats and the nats CLI
//! send means what it means to nats-server.

use serde::de::DeserializeOwned;

use crate::api_error::ApiError;

/// Decodes an optional request body. An empty (or all-blank) body or `null` gives the defaults,
/// and a `null` member leaves its field at the default: async-nats sends `null` for "no options"
/// and `{"offset":0,"subject":null}` for unfiltered stream names. Anything else that is not the
/// expected JSON is 10025 `invalid JSON`.
pub fn decode_request_body<T: Default + DeserializeOwned>(payload: &[u8]) -> Result<T, ApiError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(payload).map_err(ApiError::invalid_json)?;
    match &mut value {
        serde_json::Value::Null => return Ok(T::default()),
        serde_json::Value::Object(members) => members.retain(|_, v| !v.is_null()),
        _ => {}
    }
    serde_json::from_value(value).map_err(ApiError::invalid_json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PurgeRequest;

    #[test]
    fn empty_blank_and_null_bodies_mean_no_options() {
        for body in [&b""[..], b"  \r\n", b"null", b"{}", b"{\"filter\":null}"] {
            assert_eq!(
                decode_request_body::<PurgeRequest>(body).unwrap(),
                PurgeRequest::default()
            );
        }
    }

    #[test]
    fn members_decode_and_bad_json_is_10025() {
        let req: PurgeRequest = decode_request_body(br#"{"filter":"a.>","keep":5}"#).unwrap();
        assert_eq!((req.filter.as_str(), req.keep), ("a.>", 5));
        for body in [&b"{"[..], b"[1]", b"{\"keep\":-1}", b"\"x\""] {
            assert_eq!(
                decode_request_body::<PurgeRequest>(body)
                    .unwrap_err()
                    .err_code,
                10025
            );
        }
    }
}
