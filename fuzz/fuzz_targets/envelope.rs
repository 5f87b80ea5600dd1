//! Fuzzes `parse_response`, the one-pass reader of the response envelope,
//! and checks it against a plain reading of the same body as a
//! `serde_json::Value`.
//!
//! Input: `BODY [\0 SOURCE NAME [\0 HEADER]]`. Without a NUL byte the whole
//! input is the body, read with the default source (`/apiCost/duration` in
//! seconds), so documented envelopes are seeds as they are. SOURCE is the
//! one byte after the first NUL, whatever its value: mod 4 it picks the
//! source (body, Server-Timing, header, none), / 4 mod 3 the unit. NAME is
//! the JSON pointer, the Server-Timing metric or the header name. HEADER,
//! split at newlines, is sent both as `Server-Timing` and under the header
//! name.

#![no_main]

use std::collections::BTreeMap;
use std::fmt;

use libfuzzer_sys::fuzz_target;
use parallax::api::{
    number_in, parse_api_timestamp, parse_response, server_timing, ServerTimeSource, TimeUnit,
};
use parallax::metrics::{MissingReason, ServerTime, MAX_LATENCY_US};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (body, rest) = split_at_nul(data);
    let (source, header_name, header) = match rest {
        None => (ServerTimeSource::default(), fallback_header(), &[][..]),
        Some(rest) => {
            let (selector, rest) = rest.split_first().unwrap_or((&0, &[]));
            let (name, header) = split_at_nul(rest);
            let (source, header_name) = source_from(*selector, name);
            (source, header_name, header.unwrap_or_default())
        }
    };
    let mut headers = HeaderMap::new();
    for line in header.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append("server-timing", value.clone());
            headers.append(header_name.clone(), value);
        }
    }

    let envelope = parse_response(body, &headers, &source);

    if let ServerTime::Reported(micros) = envelope.server_time {
        assert!(micros <= MAX_LATENCY_US, "{micros} us is above the cap");
    }
    match &source {
        ServerTimeSource::None => assert_eq!(
            envelope.server_time,
            ServerTime::Missing(MissingReason::NotReported)
        ),
        ServerTimeSource::Header { name, unit } => {
            let expected = match headers.get(name).and_then(|v| v.to_str().ok()) {
                Some(text) => number_in(text, *unit),
                None => ServerTime::Missing(MissingReason::NoHeader),
            };
            assert_eq!(envelope.server_time, expected);
        }
        ServerTimeSource::ServerTiming { metric } => {
            assert_eq!(
                envelope.server_time,
                server_timing(&headers, metric.as_deref())
            );
        }
        ServerTimeSource::Body { .. } => {}
    }

    if serde_json::from_slice::<de::IgnoredAny>(body).is_err() {
        // parallax parses only the envelope's own fields and steps over the
        // other values without checking them, so a body whose only fault
        // lies inside such a value (in `data`, say) is read. Anything else
        // gives `NotJson` and no fields. Either way the body must at least
        // look like one object.
        let not_json = envelope.success.is_none()
            && envelope.status_code.is_none()
            && envelope.api_cost_span.is_none()
            && match source {
                ServerTimeSource::Body { .. } => {
                    envelope.server_time == ServerTime::Missing(MissingReason::NotJson)
                }
                _ => true,
            };
        if !not_json {
            let text = body.trim_ascii();
            assert!(
                text.starts_with(b"{") && text.ends_with(b"}"),
                "a body that is not one object was read: {envelope:?}"
            );
        }
        return;
    }
    // The reference reading needs a body without duplicate keys: JSON leaves
    // their meaning open, so any result the parser gives for them is allowed.
    let Ok(Strict(value)) = serde_json::from_slice::<Strict>(body) else {
        return;
    };
    let Value::Object(top) = &value else {
        if let ServerTimeSource::Body { .. } = source {
            assert_eq!(
                envelope.server_time,
                ServerTime::Missing(MissingReason::NotJson)
            );
        }
        return;
    };
    assert_eq!(
        envelope.success,
        top.get("success").and_then(Value::as_bool)
    );
    assert_eq!(
        envelope.status_code,
        top.get("statusCode").and_then(Value::as_i64)
    );
    let spans = allowed_spans(top.get("apiCost"));
    assert!(
        spans.contains(&envelope.api_cost_span),
        "apiCost span {:?}, expected one of {spans:?}",
        envelope.api_cost_span
    );
    if let ServerTimeSource::Body { pointer, unit } = &source {
        let allowed = allowed_body_times(&value, pointer, *unit);
        assert!(
            allowed.contains(&envelope.server_time),
            "pointer {pointer:?} gave {:?}, expected one of {allowed:?}",
            envelope.server_time
        );
    }
});

fn fallback_header() -> HeaderName {
    HeaderName::from_static("x-response-time")
}

/// Splits `data` at its first NUL byte, which belongs to neither part.
fn split_at_nul(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
        None => (data, None),
    }
}

fn source_from(selector: u8, name: &[u8]) -> (ServerTimeSource, HeaderName) {
    let unit = [
        TimeUnit::Seconds,
        TimeUnit::Milliseconds,
        TimeUnit::Microseconds,
    ][usize::from(selector / 4 % 3)];
    let name_text = String::from_utf8_lossy(name);
    let header_name = HeaderName::from_bytes(name).unwrap_or_else(|_| fallback_header());
    let source = match selector % 4 {
        0 => ServerTimeSource::Body {
            pointer: ServerTimeSource::parse_pointer(&name_text)
                .unwrap_or_else(|_| vec!["apiCost".into(), "duration".into()]),
            unit,
        },
        1 => ServerTimeSource::ServerTiming {
            metric: (!name.is_empty()).then(|| name_text.into_owned()),
        },
        2 => ServerTimeSource::Header {
            name: header_name.clone(),
            unit,
        },
        _ => ServerTimeSource::None,
    };
    (source, header_name)
}

/// Lists the server times that a plain reading of the body allows. It walks
/// the pointer through the parsed value (RFC 6901) and then applies the
/// documented rules. Only a string allows two results (see the comment there).
fn allowed_body_times(root: &Value, pointer: &[String], unit: TimeUnit) -> Vec<ServerTime> {
    let missing = |reason| vec![ServerTime::Missing(reason)];
    let mut current = root;
    for segment in pointer {
        current = match current {
            Value::Null => return missing(MissingReason::Null),
            Value::Object(map) => match map.get(segment) {
                Some(child) => child,
                None => return missing(MissingReason::Absent),
            },
            Value::Array(items) => match array_index(segment).and_then(|i| items.get(i)) {
                Some(child) => child,
                None => return missing(MissingReason::Absent),
            },
            _ => return missing(MissingReason::Absent),
        };
    }
    match current {
        Value::Null => missing(MissingReason::Null),
        // The shortest spelling of the same f64 reads as the same number.
        Value::Number(number) => vec![number_in(&number.to_string(), unit)],
        // A string holding a number counts. The parser reads the raw text
        // and decodes no escapes, and the parsed value no longer shows
        // whether the body had any (`"\u0030"` is `"0"`), so a string may
        // also be "not a number".
        Value::String(text) => vec![
            number_in(&format!("\"{text}\""), unit),
            ServerTime::Missing(MissingReason::NotANumber),
        ],
        _ => missing(MissingReason::NotANumber),
    }
}

/// Parses an array index as RFC 6901 defines it: `0`, or digits without a
/// leading zero.
fn array_index(segment: &str) -> Option<usize> {
    let canonical = segment == "0"
        || (!segment.starts_with('0') && segment.bytes().all(|b| b.is_ascii_digit()));
    if canonical {
        segment.parse().ok()
    } else {
        None
    }
}

/// Lists the `apiCost` spans that a plain reading allows: only an object has
/// a `start` and a `finish`.
fn allowed_spans(api_cost: Option<&Value>) -> Vec<Option<(i64, i64)>> {
    let span = |start: Option<&Value>, finish: Option<&Value>| {
        let read = |value: Option<&Value>| parse_api_timestamp(value?.as_str()?);
        Some((read(start)?, read(finish)?))
    };
    match api_cost {
        Some(Value::Object(fields)) => vec![span(fields.get("start"), fields.get("finish"))],
        _ => vec![None],
    }
}

/// A JSON value parsed with duplicate object keys rejected.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if members.insert(key, value).is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(Value::Object(members.into_iter().collect()))
    }
}
