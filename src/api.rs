//! The target's wire model: the response envelope, the login token and its expiry.
//!
//! Envelope (every JSON response): `success` (bool), `statusCode` (int),
//! `message`, `data`, `rows`, `apiCost { start, finish, duration }`, where
//! `duration` is the server's processing time in **seconds** and
//! `start`/`finish` read like `2026-03-31 15:56:56'255` (local time, no zone).
//! Any field may be missing, null or of another type; parsing never fails the
//! request because of it, it only reports the server time as missing.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::metrics::{ServerTime, MAX_LATENCY_US};

/// The fields of an envelope that parallax reads, borrowed from the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    /// `Some(false)` only when the body says `"success": false` as a JSON boolean.
    pub success: Option<bool>,
    pub status_code: Option<i64>,
    pub server_time: ServerTime,
}

impl Envelope {
    /// The envelope of a body that is not a JSON object.
    pub const NOT_JSON: Envelope = Envelope {
        success: None,
        status_code: None,
        server_time: ServerTime::Missing,
    };
}

#[derive(Deserialize)]
struct EnvelopeWire<'a> {
    #[serde(default, borrow)]
    success: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "statusCode")]
    status_code: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "apiCost")]
    api_cost: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ApiCostWire<'a> {
    #[serde(default, borrow)]
    duration: Option<&'a RawValue>,
}

/// Parses the envelope fields parallax needs, skipping everything else
/// (`data` and `rows` are never materialised).
pub fn parse_envelope(body: &[u8]) -> Envelope {
    let Ok(wire) = serde_json::from_slice::<EnvelopeWire<'_>>(body) else {
        return Envelope::NOT_JSON;
    };
    let success = wire
        .success
        .and_then(|raw| serde_json::from_str::<bool>(raw.get()).ok());
    let status_code = wire
        .status_code
        .and_then(|raw| serde_json::from_str::<i64>(raw.get()).ok());
    let server_time = wire
        .api_cost
        .and_then(|raw| serde_json::from_str::<ApiCostWire<'_>>(raw.get()).ok())
        .and_then(|cost| cost.duration)
        .map_or(ServerTime::Missing, |raw| parse_duration_seconds(raw.get()));
    Envelope {
        success,
        status_code,
        server_time,
    }
}

/// Converts the raw JSON text of `apiCost.duration` (seconds) to microseconds.
///
/// Every JSON spelling of a number gives the same value (`0.078`, `7.8e-2`,
/// `78e-3`). A string holding a number (`"0.078"`) is accepted the same way,
/// because some servers serialise decimals as strings. `null`, other strings,
/// negative values, non-finite values and values above one hour are missing.
pub fn parse_duration_seconds(raw: &str) -> ServerTime {
    let text = raw.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let Ok(seconds) = text.trim().parse::<f64>() else {
        return ServerTime::Missing;
    };
    let micros = seconds * 1e6;
    if !micros.is_finite() || micros < 0.0 || micros > MAX_LATENCY_US as f64 {
        return ServerTime::Missing;
    }
    ServerTime::Reported(micros.round() as u64)
}

/// Reads the `exp` claim (seconds since the Unix epoch) of a token that
/// decodes as a JWT. Returns `None` for opaque tokens; the signature is not
/// checked, because the client only uses `exp` to refresh early.
pub fn jwt_expiry(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    let payload = payload.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;

    #[derive(Deserialize)]
    struct Claims {
        exp: Option<serde_json::Number>,
    }
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.exp?;
    exp.as_u64().or_else(|| {
        exp.as_f64()
            .filter(|value| *value >= 0.0)
            .map(|value| value as u64)
    })
}

/// Formats a wall-clock time the way `apiCost.start` and `finish` are written:
/// `YYYY-MM-DD HH:MM:SS'mmm`, local time, no zone.
pub fn format_api_timestamp(time: chrono::DateTime<chrono::Local>) -> String {
    time.format("%Y-%m-%d %H:%M:%S'%3f").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGIN_RESPONSE: &str = r#"{
        "success": true, "statusCode": 200, "message": "Login Success.",
        "data": {"token": "a.b.c", "member": {"id": 1, "code": "1881-E62B-7341-A", "name": "user",
                 "email": "user@email.com", "member": 1, "status": "active"}},
        "rows": 2,
        "apiCost": {"start": "2026-03-31 15:56:56'255", "finish": "2026-03-31 15:56:56'333", "duration": 0.078}
    }"#;

    #[test]
    fn documented_login_response_parses() {
        let envelope = parse_envelope(LOGIN_RESPONSE.as_bytes());
        assert_eq!(envelope.success, Some(true));
        assert_eq!(envelope.status_code, Some(200));
        assert_eq!(envelope.server_time, ServerTime::Reported(78_000));
    }

    #[test]
    fn duration_spellings_agree() {
        for spelling in [
            "0.078",
            "7.8e-2",
            "78e-3",
            "0.0780000",
            "7.8E-2",
            "\"0.078\"",
        ] {
            assert_eq!(
                parse_duration_seconds(spelling),
                ServerTime::Reported(78_000),
                "{spelling}"
            );
        }
        assert_eq!(parse_duration_seconds("1e-6"), ServerTime::Reported(1));
    }

    #[test]
    fn unusable_durations_are_missing() {
        for raw in ["null", "-0.5", "\"fast\"", "true", "1e300", "{}"] {
            assert_eq!(parse_duration_seconds(raw), ServerTime::Missing, "{raw}");
        }
    }

    #[test]
    fn garbled_bodies_do_not_fail() {
        for body in [
            "",
            "<html>",
            "{\"success\": false",
            "[1,2]",
            "{\"apiCost\": null}",
            "{\"apiCost\": 3}",
        ] {
            let envelope = parse_envelope(body.as_bytes());
            assert_eq!(envelope.server_time, ServerTime::Missing, "{body}");
        }
    }

    #[test]
    fn success_false_is_read_only_from_boolean() {
        assert_eq!(
            parse_envelope(br#"{"success": false}"#).success,
            Some(false)
        );
        assert_eq!(parse_envelope(br#"{"success": "false"}"#).success, None);
    }

    #[test]
    fn jwt_expiry_reads_exp_claim() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"u","exp":1767225600}"#);
        assert_eq!(
            jwt_expiry(&format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig")),
            Some(1_767_225_600)
        );
        assert_eq!(jwt_expiry("opaque-token"), None);
        assert_eq!(jwt_expiry("a.!!!.c"), None);
    }
}
