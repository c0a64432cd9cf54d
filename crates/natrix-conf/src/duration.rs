//! Durations as nats-server reads them: Go's `time.ParseDuration` syntax (`500ms`, `2m`, `1h30m`,
//! `1.5s`), and, for options that predate durations, a plain integer meaning seconds.

use std::time::Duration;

use crate::Value;

/// A duration that could not be read. Display matches Go's `time.ParseDuration` errors, which
/// nats-server prints after `error parsing <option>: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("time: invalid duration \"{0}\"")]
    Invalid(String),
    #[error("time: missing unit in duration \"{0}\"")]
    MissingUnit(String),
    #[error("time: unknown unit \"{unit}\" in duration \"{text}\"")]
    UnknownUnit { unit: String, text: String },
    #[error("duration \"{0}\" is negative")]
    Negative(String),
    #[error("expected a duration string such as \"2m\" or an integer number of seconds, got {0}")]
    WrongType(&'static str),
}

/// How a duration was written; integers are nats-server's deprecated form (it warns
/// "<option> should be converted to a duration").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationSource {
    Text,
    Seconds,
}

const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration string: an optionally signed sequence of decimal numbers, each with an
/// optional fraction and a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`); `"0"` needs no unit.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(text.to_string());
    let mut s = text;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, rest) = s.split_at(int_len);
        s = rest;
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            (frac_part, s) = rest.split_at(frac_len);
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(text.to_string()));
        }
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_string(),
                    text: text.to_string(),
                });
            }
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut nanos = whole.checked_mul(scale).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            // Digits beyond nanosecond precision cannot change the result; ignore them so the
            // arithmetic stays bounded.
            let digits = &frac_part[..frac_part.len().min(20)];
            let frac: u128 = digits.parse().map_err(|_| invalid())?;
            let divisor = 10u128.pow(digits.len() as u32);
            nanos = nanos
                .checked_add(frac * scale / divisor)
                .ok_or_else(invalid)?;
        }
        total = total.checked_add(nanos).ok_or_else(invalid)?;
        if total > MAX_NANOS {
            return Err(invalid());
        }
    }
    if negative && total > 0 {
        return Err(DurationError::Negative(text.to_string()));
    }
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Reads a duration option the way nats-server does: a string is a Go duration, an integer is a
/// number of seconds (the caller should warn that it is deprecated).
pub fn value_as_duration(value: &Value) -> Result<(Duration, DurationSource), DurationError> {
    match value {
        Value::String(s) => parse_duration(s).map(|d| (d, DurationSource::Text)),
        Value::Int(secs) => match u64::try_from(*secs) {
            Ok(secs) => Ok((Duration::from_secs(secs), DurationSource::Seconds)),
            Err(_) => Err(DurationError::Negative(secs.to_string())),
        },
        other => Err(DurationError::WrongType(other.type_name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_strings_parse_to_the_same_length_as_in_go() {
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1us"), Ok(Duration::from_micros(1)));
        assert_eq!(parse_duration("1µs"), Ok(Duration::from_micros(1)));
        assert_eq!(parse_duration("3ns"), Ok(Duration::from_nanos(3)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("+5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("-0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn malformed_durations_are_rejected_with_go_wording() {
        assert_eq!(
            parse_duration("10").unwrap_err().to_string(),
            "time: missing unit in duration \"10\""
        );
        assert_eq!(
            parse_duration("5x").unwrap_err().to_string(),
            "time: unknown unit \"x\" in duration \"5x\""
        );
        assert_eq!(
            parse_duration("").unwrap_err().to_string(),
            "time: invalid duration \"\""
        );
        assert_eq!(
            parse_duration("abc").unwrap_err().to_string(),
            "time: invalid duration \"abc\""
        );
        assert!(matches!(
            parse_duration("-1s"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            parse_duration("9999999999999h"),
            Err(DurationError::Invalid(_))
        ));
    }

    #[test]
    fn integers_are_seconds_and_flagged_as_the_deprecated_form() {
        assert_eq!(
            value_as_duration(&Value::Int(60)),
            Ok((Duration::from_secs(60), DurationSource::Seconds))
        );
        assert_eq!(
            value_as_duration(&Value::String("2m".into())),
            Ok((Duration::from_secs(120), DurationSource::Text))
        );
        assert!(value_as_duration(&Value::Int(-1)).is_err());
        assert!(value_as_duration(&Value::Bool(true)).is_err());
    }
}
