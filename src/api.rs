//! The target's wire model: the response envelope, where the server reports
//! its own time, the login token and its expiry.
//!
//! Envelope (every JSON response): `success` (bool), `statusCode` (int),
//! `message`, `data`, `rows`, `apiCost { start, finish, duration }`, where
//! `duration` is the server's processing time in **seconds** and
//! `start`/`finish` read like `2026-03-31 15:56:56'255` (no zone). Any field
//! may be missing, null or of another type: parsing never fails the request
//! because of it, it reports the server time as missing, with the reason.
//!
//! The body is read in one pass that keeps only the fields needed, borrowed
//! from the body; `data` and `rows` are skipped without being built.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::metrics::{MissingReason, ServerTime, MAX_LATENCY_US};

/// The unit a server reports its time in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TimeUnit {
    #[serde(rename = "s")]
    Seconds,
    #[serde(rename = "ms")]
    Milliseconds,
    #[serde(rename = "us")]
    Microseconds,
}

impl TimeUnit {
    fn micros(self) -> f64 {
        match self {
            TimeUnit::Seconds => 1e6,
            TimeUnit::Milliseconds => 1e3,
            TimeUnit::Microseconds => 1.0,
        }
    }
}

/// Where the server reports the time it spent on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTimeSource {
    /// A number in the JSON body at a JSON pointer (RFC 6901); the default
    /// is `/apiCost/duration` in seconds.
    Body {
        pointer: Vec<String>,
        unit: TimeUnit,
    },
    /// The `Server-Timing` header (W3C syntax, `dur` in milliseconds): one
    /// metric by name, or the sum of every metric's `dur` when `None`.
    ServerTiming { metric: Option<String> },
    /// A plain response header holding a number in `unit`.
    Header {
        name: http::header::HeaderName,
        unit: TimeUnit,
    },
    /// The server reports no time: only client latency is recorded.
    None,
}

impl Default for ServerTimeSource {
    fn default() -> Self {
        ServerTimeSource::Body {
            pointer: vec!["apiCost".into(), "duration".into()],
            unit: TimeUnit::Seconds,
        }
    }
}

impl ServerTimeSource {
    /// Splits a JSON pointer into its unescaped segments (`~1` is `/`, `~0` is `~`).
    pub fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err(format!(
                "{pointer:?} is not a JSON pointer; write it like \"/apiCost/duration\""
            ));
        };
        Ok(rest
            .split('/')
            .map(|segment| segment.replace("~1", "/").replace("~0", "~"))
            .collect())
    }
}

/// The fields of a response that parallax reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    /// `Some(false)` only when the body contains `"success": false` as a JSON boolean.
    pub success: Option<bool>,
    pub status_code: Option<i64>,
    pub server_time: ServerTime,
    /// `apiCost.start` and `apiCost.finish`, as written (no zone), in
    /// microseconds since 1970-01-01 00:00:00 of that unknown zone.
    pub api_cost_span: Option<(i64, i64)>,
}

impl Envelope {
    fn missing(reason: MissingReason) -> Self {
        Envelope {
            success: None,
            status_code: None,
            server_time: ServerTime::Missing(reason),
            api_cost_span: None,
        }
    }
}

/// Parses what parallax needs from a response: the envelope fields, the
/// server time from `source`, and the `apiCost` timestamps.
pub fn parse_response(
    body: &[u8],
    headers: &http::header::HeaderMap,
    source: &ServerTimeSource,
) -> Envelope {
    let head = match source {
        ServerTimeSource::Body { pointer, .. } => pointer.first().map(String::as_str),
        _ => None,
    };
    // The default pointer, and any other of the form /apiCost/<key>, is read
    // in the same pass over `apiCost` as the timestamps.
    let api_cost_key = match source {
        ServerTimeSource::Body { pointer, .. } if pointer.len() == 2 && pointer[0] == "apiCost" => {
            Some(pointer[1].as_str())
        }
        _ => None,
    };
    let mut envelope = match top_level(body, head, api_cost_key) {
        Ok(fields) => {
            let api_cost = fields.api_cost;
            let mut envelope = Envelope {
                success: fields
                    .success
                    .and_then(|raw| serde_json::from_str::<bool>(raw.get()).ok()),
                status_code: fields
                    .status_code
                    .and_then(|raw| serde_json::from_str::<i64>(raw.get()).ok()),
                server_time: ServerTime::Missing(MissingReason::Absent),
                api_cost_span: api_cost.as_ref().and_then(ApiCost::span),
            };
            if let ServerTimeSource::Body { pointer, unit } = source {
                let value = match (api_cost_key, &api_cost) {
                    (Some(_), None) => Err(MissingReason::Absent),
                    (Some(_), Some(api_cost)) => api_cost.chosen(),
                    (None, _) => match fields.pointer_head {
                        Some(head) => descend(head, &pointer[1..]),
                        None => Err(MissingReason::Absent),
                    },
                };
                envelope.server_time =
                    value.map_or_else(ServerTime::Missing, |raw| number_in(raw.get(), *unit));
            }
            envelope
        }
        Err(()) => Envelope::missing(MissingReason::NotJson),
    };
    match source {
        ServerTimeSource::Body { .. } => {}
        ServerTimeSource::ServerTiming { metric } => {
            envelope.server_time = server_timing(headers, metric.as_deref())
        }
        ServerTimeSource::Header { name, unit } => {
            envelope.server_time = match headers.get(name).and_then(|value| value.to_str().ok()) {
                Some(text) => number_in(text, *unit),
                None => ServerTime::Missing(MissingReason::NoHeader),
            }
        }
        ServerTimeSource::None => {
            envelope.server_time = ServerTime::Missing(MissingReason::NotReported)
        }
    }
    envelope
}

/// Parses the envelope with the default server-time source (`/apiCost/duration`).
pub fn parse_envelope(body: &[u8]) -> Envelope {
    parse_response(
        body,
        &http::header::HeaderMap::new(),
        &ServerTimeSource::default(),
    )
}

/// Converts the raw JSON text of `apiCost.duration` (seconds) to microseconds.
pub fn parse_duration_seconds(raw: &str) -> ServerTime {
    number_in(raw, TimeUnit::Seconds)
}

/// Converts a number written as JSON or header text to microseconds.
///
/// Every JSON spelling of a number gives the same value (`0.078`, `7.8e-2`,
/// `78e-3`). A string holding a number (`"0.078"`) is accepted the same way,
/// because some servers serialise decimals as strings. The reasons for a
/// missing time are, in order: `null`, not a number (other strings,
/// booleans, objects), negative, and too large (above one hour or not finite).
pub fn number_in(raw: &str, unit: TimeUnit) -> ServerTime {
    let text = raw.trim();
    if text == "null" {
        return ServerTime::Missing(MissingReason::Null);
    }
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
        .trim();
    let Ok(value) = text.parse::<f64>() else {
        return ServerTime::Missing(MissingReason::NotANumber);
    };
    let micros = value * unit.micros();
    if micros < 0.0 {
        return ServerTime::Missing(MissingReason::Negative);
    }
    if !micros.is_finite() || micros > MAX_LATENCY_US as f64 {
        return ServerTime::Missing(MissingReason::TooLarge);
    }
    ServerTime::Reported(micros.round() as u64)
}

/// Reads the `Server-Timing` headers (W3C Server Timing): comma-separated
/// metrics such as `db;dur=3.1, app;dur=12.5;desc="x"`, `dur` in milliseconds.
/// With a metric name, that metric's `dur`; without, the sum of every `dur`.
pub fn server_timing(headers: &http::header::HeaderMap, metric: Option<&str>) -> ServerTime {
    let mut found = false;
    let mut total_ms = 0.0;
    for value in headers.get_all("server-timing") {
        let Ok(text) = value.to_str() else { continue };
        for entry in split_outside_quotes(text, ',') {
            let mut parts = split_outside_quotes(entry, ';').into_iter();
            let name = parts.next().unwrap_or_default().trim();
            if metric.is_some_and(|wanted| !wanted.eq_ignore_ascii_case(name)) {
                continue;
            }
            let duration = parts
                .filter_map(|part| part.split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("dur"));
            if let Some((_, value)) = duration {
                match number_in(value, TimeUnit::Milliseconds) {
                    ServerTime::Reported(micros) => {
                        found = true;
                        total_ms += micros as f64 / 1000.0;
                    }
                    missing => return missing,
                }
            }
        }
    }
    if found {
        number_in(&total_ms.to_string(), TimeUnit::Milliseconds)
    } else {
        ServerTime::Missing(MissingReason::NoHeader)
    }
}

fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (index, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..index]);
                start = index + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Parses `YYYY-MM-DD HH:MM:SS'mmm` (a `.` instead of the apostrophe, or no
/// milliseconds, is accepted) into microseconds since 1970-01-01 00:00:00 of
/// the same, unknown, zone.
pub fn parse_api_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    let (main, millis) = match text.split_once(['\'', '.']) {
        Some((main, millis)) => (main, millis),
        None => (text, "0"),
    };
    // Read by position: chrono's format parser cost about a microsecond per
    // timestamp, most of the envelope's parse time.
    let bytes = main.as_bytes();
    let separators = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if bytes.len() != 19 || separators.iter().any(|&(index, byte)| bytes[index] != byte) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = &bytes[range];
        digits.iter().all(u8::is_ascii_digit).then(|| {
            digits
                .iter()
                .fold(0, |value, digit| value * 10 + u32::from(digit - b'0'))
        })
    };
    let (year, month, day) = (number(0..4)? as i64, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let seconds =
        days_since_epoch(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    if millis.is_empty() || millis.len() > 3 || !millis.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Digits after the separator are a decimal fraction of a second: '5 is 500 ms.
    let scale = [100, 10, 1][millis.len() - 1];
    let millis = i64::from(
        millis
            .bytes()
            .fold(0, |value, digit| value * 10 + u32::from(digit - b'0'))
            * scale,
    );
    Some(seconds * 1_000_000 + millis * 1000)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Counts the days from 1970-01-01 to a date of the proleptic Gregorian
/// calendar, by the days-from-civil method: years start in March, so the
/// leap day ends a year, and 400 years are 146,097 days.
fn days_since_epoch(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The members of `apiCost` read in the pass over the body: the timestamps,
/// and the member the server-time pointer names.
#[derive(Default)]
struct ApiCost<'a> {
    /// True when `apiCost` is `null`. A pointer into it then finds a null.
    is_null: bool,
    start: Option<&'a RawValue>,
    finish: Option<&'a RawValue>,
    /// The member (of an object) or element (of an array) the pointer names.
    chosen: Option<&'a RawValue>,
}

impl ApiCost<'_> {
    /// Reads `start` and `finish` as timestamps; both must be strings.
    fn span(&self) -> Option<(i64, i64)> {
        let timestamp = |raw: &RawValue| {
            let text = raw.get();
            // A string without escapes is its bytes between the quotes.
            if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                if !inner.contains('\\') {
                    return parse_api_timestamp(inner);
                }
            }
            let text: Cow<'_, str> = serde_json::from_str(text).ok()?;
            parse_api_timestamp(&text)
        };
        Some((timestamp(self.start?)?, timestamp(self.finish?)?))
    }

    /// Returns the value that the pointer `/apiCost/<key>` leads to, with
    /// the same reasons as [`descend`] when there is none.
    fn chosen(&self) -> Result<&RawValue, MissingReason> {
        if self.is_null {
            return Err(MissingReason::Null);
        }
        self.chosen.ok_or(MissingReason::Absent)
    }
}

/// Reads `apiCost` within the pass over the body. `chosen` is the last
/// segment of a server-time pointer `/apiCost/<chosen>`.
struct ApiCostSeed<'p> {
    chosen: Option<&'p str>,
}

impl<'de> DeserializeSeed<'de> for ApiCostSeed<'_> {
    type Value = ApiCost<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ApiCostSeed<'_> {
    type Value = ApiCost<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = ApiCost::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let is_chosen = Some(key.as_ref()) == self.chosen;
            let slot = match key.as_ref() {
                "start" => Some(&mut fields.start),
                "finish" => Some(&mut fields.finish),
                _ => None,
            };
            if slot.is_none() && !is_chosen {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value: &'de RawValue = map.next_value()?;
            if let Some(slot) = slot {
                *slot = Some(value);
            }
            // The first occurrence counts, as the pointer lookup finds it.
            if is_chosen && fields.chosen.is_none() {
                fields.chosen = Some(value);
            }
        }
        Ok(fields)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let chosen_index = self.chosen.and_then(array_index);
        let mut fields = ApiCost::default();
        let mut index = 0;
        loop {
            if Some(index) == chosen_index {
                match seq.next_element::<&'de RawValue>()? {
                    Some(value) => fields.chosen = Some(value),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            index += 1;
        }
        Ok(fields)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(ApiCost {
            is_null: true,
            ..ApiCost::default()
        })
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(ApiCost::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(ApiCost::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(ApiCost::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(ApiCost::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(ApiCost::default())
    }
}

/// Parses an array index of a JSON pointer: `0`, or digits without a
/// leading zero (RFC 6901), so `01` and `+1` name no element.
fn array_index(segment: &str) -> Option<usize> {
    let valid = match segment.as_bytes() {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if valid {
        segment.parse().ok()
    } else {
        None
    }
}

/// The top-level fields kept from one pass over the body.
#[derive(Default)]
struct TopLevel<'a> {
    success: Option<&'a RawValue>,
    status_code: Option<&'a RawValue>,
    api_cost: Option<ApiCost<'a>>,
    /// The value under the first segment of the server-time pointer.
    pointer_head: Option<&'a RawValue>,
}

/// Reads the top-level object of a body. The values parallax keeps are
/// parsed, and so checked, by serde_json. Every other value (`data`, `rows`,
/// anything unknown) is only stepped over, which costs less than parsing it:
/// its brackets must balance and its strings must end, but its contents are
/// not checked.
fn top_level<'a>(
    body: &'a [u8],
    head: Option<&str>,
    api_cost_key: Option<&str>,
) -> Result<TopLevel<'a>, ()> {
    let mut scan = Scanner { body, at: 0 };
    let mut fields = TopLevel::default();
    scan.expect(b'{')?;
    if !scan.next_is(b'}') {
        loop {
            let key = scan.key()?;
            scan.expect(b':')?;
            scan.skip_whitespace();
            let is_head = Some(key.as_ref()) == head;
            let slot = match key.as_ref() {
                "success" => Some(&mut fields.success),
                "statusCode" => Some(&mut fields.status_code),
                _ => None,
            };
            if key == "apiCost" && (api_cost_key.is_some() || !is_head) {
                let mut deserializer = serde_json::Deserializer::from_str(scan.value()?);
                let seed = ApiCostSeed {
                    chosen: api_cost_key,
                };
                fields.api_cost = Some(seed.deserialize(&mut deserializer).map_err(|_| ())?);
            } else if slot.is_some() || is_head {
                let value: &'a RawValue = serde_json::from_str(scan.value()?).map_err(|_| ())?;
                if let Some(slot) = slot {
                    *slot = Some(value);
                }
                if is_head {
                    fields.pointer_head = Some(value);
                    // A pointer such as `/apiCost` or `/apiCost/a/b` takes the raw
                    // value, and the timestamps are read from it in a second pass.
                    if key == "apiCost" {
                        let mut deserializer = serde_json::Deserializer::from_str(value.get());
                        fields.api_cost = ApiCostSeed { chosen: None }
                            .deserialize(&mut deserializer)
                            .ok();
                    }
                }
            } else {
                scan.skip_value()?;
            }
            scan.skip_whitespace();
            match scan.take()? {
                b',' => continue,
                b'}' => break,
                _ => return Err(()),
            }
        }
    }
    scan.skip_whitespace();
    if scan.at == body.len() {
        Ok(fields)
    } else {
        Err(())
    }
}

/// The read position in a JSON body, for [`top_level`].
struct Scanner<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.body.get(self.at) {
            self.at += 1;
        }
    }

    fn take(&mut self) -> Result<u8, ()> {
        let byte = *self.body.get(self.at).ok_or(())?;
        self.at += 1;
        Ok(byte)
    }

    /// Skips whitespace and takes `byte`, or fails.
    fn expect(&mut self, byte: u8) -> Result<(), ()> {
        self.skip_whitespace();
        if self.take()? == byte {
            Ok(())
        } else {
            Err(())
        }
    }

    /// Skips whitespace and takes `byte` when it comes next.
    fn next_is(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let found = self.body.get(self.at) == Some(&byte);
        if found {
            self.at += 1;
        }
        found
    }

    /// Reads an object key, borrowed from the body unless it has escapes.
    fn key(&mut self) -> Result<Cow<'a, str>, ()> {
        self.skip_whitespace();
        let start = self.at;
        if self.take()? != b'"' {
            return Err(());
        }
        let escaped = self.skip_string_rest()?;
        let quoted = &self.body[start..self.at];
        if escaped {
            serde_json::from_slice::<String>(quoted)
                .map(Cow::Owned)
                .map_err(|_| ())
        } else {
            let inner = &quoted[1..quoted.len() - 1];
            std::str::from_utf8(inner)
                .map(Cow::Borrowed)
                .map_err(|_| ())
        }
    }

    /// Steps over one value and returns its text.
    fn value(&mut self) -> Result<&'a str, ()> {
        let start = self.at;
        self.skip_value()?;
        std::str::from_utf8(&self.body[start..self.at]).map_err(|_| ())
    }

    /// Steps over one value: a string, an object or array with balanced
    /// brackets, or a scalar up to the next delimiter.
    fn skip_value(&mut self) -> Result<(), ()> {
        match self.take()? {
            b'"' => self.skip_string_rest().map(|_| ()),
            b'{' | b'[' => self.skip_nested_rest(),
            b',' | b'}' | b']' | b':' => Err(()),
            _ => {
                let rest = &self.body[self.at..];
                self.at += find_class(rest, SCALAR_END).unwrap_or(rest.len());
                Ok(())
            }
        }
    }

    /// Steps past the rest of an object or array whose opening bracket was
    /// taken. Only brackets change the depth, and each string is stepped
    /// over whole, so brackets inside it do not count. A closing bracket of
    /// either kind closes an opening one of either kind.
    fn skip_nested_rest(&mut self) -> Result<(), ()> {
        let body = self.body;
        let mut at = self.at;
        let mut depth = 1_usize;
        while let Some(&byte) = body.get(at) {
            at += 1;
            if BYTE_CLASSES[usize::from(byte)] & QUOTE_OR_BRACKET == 0 {
                continue;
            }
            match byte {
                b'"' => at = string_end(body, at)?.0,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.at = at;
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        Err(())
    }

    /// Steps past the rest of a string whose opening quote was taken; true
    /// when it contains escapes.
    fn skip_string_rest(&mut self) -> Result<bool, ()> {
        let (end, escaped) = string_end(self.body, self.at)?;
        self.at = end;
        Ok(escaped)
    }
}

/// Finds the closing quote of the string whose contents start at `at`.
/// Returns the index just past it and whether the string contains escapes.
#[inline(always)]
fn string_end(body: &[u8], mut at: usize) -> Result<(usize, bool), ()> {
    let mut escaped = false;
    loop {
        at = find_quote_or_backslash(body, at).ok_or(())?;
        let byte = body[at];
        at += 1;
        if byte == b'"' {
            return Ok((at, escaped));
        }
        escaped = true;
        // The escaped character, a quote or a backslash among them.
        if at == body.len() {
            return Err(());
        }
        at += 1;
    }
}

/// Finds the first quote or backslash in `body` from `at` on. Tests eight
/// bytes at once as one `u64`, and the last bytes, fewer than eight, one at
/// a time.
#[inline(always)]
fn find_quote_or_backslash(body: &[u8], mut at: usize) -> Option<usize> {
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    while let Some(&word) = body.get(at..).and_then(|rest| rest.first_chunk::<8>()) {
        let word = u64::from_le_bytes(word);
        let hits = zero_bytes(word ^ QUOTES) | zero_bytes(word ^ BACKSLASHES);
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = find_class(body.get(at..)?, STRING_STOP)?;
    Some(at + tail)
}

/// Sets the high bit of each zero byte of `word` and clears every other bit.
/// The addition carries no bit from one byte into the next, so the result is
/// exact for every byte, whatever its neighbours contain.
fn zero_bytes(word: u64) -> u64 {
    const LOW_BITS: u64 = u64::from_ne_bytes([0x7F; 8]);
    !(((word & LOW_BITS) + LOW_BITS) | word | LOW_BITS)
}

/// The [`BYTE_CLASSES`] bit of the quote and the four brackets, the only
/// bytes that matter inside an object or array that [`Scanner`] steps over.
const QUOTE_OR_BRACKET: u8 = 1;
/// The [`BYTE_CLASSES`] bit of the quote and the backslash, which end a
/// string or start an escape in it.
const STRING_STOP: u8 = 2;
/// The [`BYTE_CLASSES`] bit of the bytes that end a scalar: a comma, a closing
/// bracket and whitespace.
const SCALAR_END: u8 = 4;

/// Class bits of every byte value, so that a scan tests one table entry per
/// byte instead of comparing the byte with each one it looks for.
static BYTE_CLASSES: [u8; 256] = {
    let mut classes = [0_u8; 256];
    classes[b'"' as usize] = QUOTE_OR_BRACKET | STRING_STOP;
    classes[b'{' as usize] = QUOTE_OR_BRACKET;
    classes[b'[' as usize] = QUOTE_OR_BRACKET;
    classes[b'}' as usize] = QUOTE_OR_BRACKET | SCALAR_END;
    classes[b']' as usize] = QUOTE_OR_BRACKET | SCALAR_END;
    classes[b'\\' as usize] = STRING_STOP;
    classes[b',' as usize] = SCALAR_END;
    classes[b' ' as usize] = SCALAR_END;
    classes[b'\t' as usize] = SCALAR_END;
    classes[b'\n' as usize] = SCALAR_END;
    classes[b'\r' as usize] = SCALAR_END;
    classes
};

/// Finds the first byte of `bytes` that is in `class`.
fn find_class(bytes: &[u8], class: u8) -> Option<usize> {
    bytes
        .iter()
        .position(|&byte| BYTE_CLASSES[usize::from(byte)] & class != 0)
}

/// A map key, borrowed from the body unless it contains escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(key.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Follows the rest of a JSON pointer from `value`.
fn descend<'a>(value: &'a RawValue, segments: &[String]) -> Result<&'a RawValue, MissingReason> {
    let mut current = value;
    for segment in segments {
        if current.get().trim() == "null" {
            return Err(MissingReason::Null);
        }
        let mut deserializer = serde_json::Deserializer::from_str(current.get());
        current = ChildSeed { segment }
            .deserialize(&mut deserializer)
            .map_err(|_| MissingReason::Absent)?
            .ok_or(MissingReason::Absent)?;
    }
    Ok(current)
}

/// Picks one member of an object (by key) or one element of an array (by index).
struct ChildSeed<'s> {
    segment: &'s str,
}

impl<'de> DeserializeSeed<'de> for ChildSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ChildSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if found.is_none() && key == self.segment {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let wanted = array_index(self.segment);
        let mut index = 0;
        let mut found = None;
        while found.is_none() {
            if Some(index) == wanted {
                match seq.next_element::<&'de RawValue>()? {
                    Some(value) => found = Some(value),
                    None => return Ok(None),
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(None);
            }
            index += 1;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(found)
    }

    // Scalars have no children: the pointer leads nowhere.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
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
    use chrono::Datelike;

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
        let cases = [
            ("null", MissingReason::Null),
            ("-0.5", MissingReason::Negative),
            ("\"fast\"", MissingReason::NotANumber),
            ("true", MissingReason::NotANumber),
            ("{}", MissingReason::NotANumber),
            ("1e300", MissingReason::TooLarge),
            ("3601", MissingReason::TooLarge),
        ];
        for (raw, reason) in cases {
            assert_eq!(
                parse_duration_seconds(raw),
                ServerTime::Missing(reason),
                "{raw}"
            );
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
            assert!(
                matches!(envelope.server_time, ServerTime::Missing(_)),
                "{body}"
            );
        }
    }

    #[test]
    fn missing_reasons_are_told_apart() {
        let reason = |body: &str| match parse_envelope(body.as_bytes()).server_time {
            ServerTime::Missing(reason) => reason,
            ServerTime::Reported(us) => panic!("{body} reported {us}"),
        };
        assert_eq!(reason("<html>"), MissingReason::NotJson);
        assert_eq!(reason("{\"success\": true}"), MissingReason::Absent);
        assert_eq!(
            reason("{\"apiCost\": {\"start\": \"x\"}}"),
            MissingReason::Absent
        );
        assert_eq!(reason("{\"apiCost\": null}"), MissingReason::Null);
        assert_eq!(
            reason("{\"apiCost\": {\"duration\": null}}"),
            MissingReason::Null
        );
        assert_eq!(
            reason("{\"apiCost\": {\"duration\": \"0.1s\"}}"),
            MissingReason::NotANumber
        );
    }

    #[test]
    fn custom_pointer_and_escaped_keys() {
        let body = br#"{"meta": {"timing": [{"ms": 1}, {"ms": 12.5}]}, "a/b": {"t": 2}}"#;
        let at = |pointer: &str, unit: TimeUnit| {
            let source = ServerTimeSource::Body {
                pointer: ServerTimeSource::parse_pointer(pointer).unwrap(),
                unit,
            };
            parse_response(body, &http::header::HeaderMap::new(), &source).server_time
        };
        assert_eq!(
            at("/meta/timing/1/ms", TimeUnit::Milliseconds),
            ServerTime::Reported(12_500)
        );
        assert_eq!(
            at("/a~1b/t", TimeUnit::Seconds),
            ServerTime::Reported(2_000_000)
        );
        assert_eq!(
            at("/meta/timing/7/ms", TimeUnit::Milliseconds),
            ServerTime::Missing(MissingReason::Absent)
        );
        // RFC 6901 array indexes have no leading zero and no sign.
        for pointer in ["/meta/timing/01/ms", "/meta/timing/+1/ms"] {
            assert_eq!(
                at(pointer, TimeUnit::Milliseconds),
                ServerTime::Missing(MissingReason::Absent),
                "{pointer}"
            );
        }
    }

    #[test]
    fn skipped_values_may_hold_any_brackets_and_escapes() {
        let body = br#"{"data": [{"name": "a \"quoted\" ] } [ text", "n": [1, {"x": "}"}]}], "rows": "\\", "success": false, "statusCode": 409, "apiCost": {"duration": 0.25}}"#;
        let envelope = parse_envelope(body);
        assert_eq!(envelope.success, Some(false));
        assert_eq!(envelope.status_code, Some(409));
        assert_eq!(envelope.server_time, ServerTime::Reported(250_000));
    }

    #[test]
    fn broken_envelopes_are_not_json() {
        for body in [
            &b""[..],
            b"[1, 2]",
            b"{",
            br#"{"data": [1, 2}"#,
            br#"{"data": "unterminated}"#,
            br#"{"a": 1 "b": 2}"#,
            br#"{"a": 1,}"#,
            br#"{"a": }"#,
            br#"{"a" 1}"#,
            br#"{"apiCost": {"duration": 0.1}} trailing"#,
            br#"{"apiCost": {"duration": 0.1,}}"#,
            br#"{"success": tru}"#,
        ] {
            assert_eq!(
                parse_envelope(body).server_time,
                ServerTime::Missing(MissingReason::NotJson),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn skipped_values_are_not_checked() {
        // Only the envelope's own fields are parsed: a broken scalar inside
        // `data` is stepped over, and the server time is still read.
        let body = br#"{"data": [tru, 1.2.3], "apiCost": {"duration": 0.005}}"#;
        assert_eq!(
            parse_envelope(body).server_time,
            ServerTime::Reported(5_000)
        );
    }

    /// Steps over one value one byte at a time, as a reference for
    /// [`Scanner::skip_value`]. The scanner must accept and reject the same
    /// inputs, and stop at the same position after the value.
    fn skip_byte_by_byte(body: &[u8], mut at: usize) -> Result<usize, ()> {
        fn take(body: &[u8], at: &mut usize) -> Result<u8, ()> {
            let byte = *body.get(*at).ok_or(())?;
            *at += 1;
            Ok(byte)
        }
        fn string_rest(body: &[u8], at: &mut usize) -> Result<(), ()> {
            loop {
                match take(body, at)? {
                    b'"' => return Ok(()),
                    b'\\' => {
                        take(body, at)?;
                    }
                    _ => {}
                }
            }
        }
        match take(body, &mut at)? {
            b'"' => string_rest(body, &mut at)?,
            b'{' | b'[' => {
                let mut depth = 1_usize;
                while depth > 0 {
                    match take(body, &mut at)? {
                        b'"' => string_rest(body, &mut at)?,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                }
            }
            b',' | b'}' | b']' | b':' => return Err(()),
            _ => {
                while let Some(byte) = body.get(at) {
                    if matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    at += 1;
                }
            }
        }
        Ok(at)
    }

    fn skip(body: &[u8]) -> Result<usize, ()> {
        let mut scan = Scanner { body, at: 0 };
        scan.skip_value().map(|()| scan.at)
    }

    #[test]
    fn skipped_strings_end_at_the_unescaped_quote() {
        for (value, len) in [
            (&br#""a\\" ]"#[..], 5),
            (br#""\"" ]"#, 4),
            (br#""\\\"" ]"#, 6),
            (br#""\\\\" ]"#, 6),
            (br#""long text \\" ]"#, 14),
            (br#""long text \" still" ]"#, 20),
            (br#""0123456\\" ]"#, 11),
            (br#""01234567\"89" ]"#, 14),
            (br#""0123456789abcde\\" ]"#, 19),
            (br#""] } [ {" ]"#, 9),
            (br#"["a\\", "\"]", "\\\"[", ["}"]] ,"#, 30),
            (br#"{"k\"}": "v\\", "n": {"]": "[\\"}} ,"#, 34),
        ] {
            let text = String::from_utf8_lossy(value);
            assert_eq!(skip(value), Ok(len), "{text}");
            assert_eq!(skip_byte_by_byte(value, 0), Ok(len), "{text}");
        }
    }

    #[test]
    fn skipped_string_every_byte_value() {
        // Each byte value at each offset within the first words of a string,
        // beside bytes that differ from a quote or backslash in the high bit
        // only.
        for byte in 0..=u8::MAX {
            for offset in 0..20 {
                let mut value = b"\"".to_vec();
                value.extend((0..offset).map(|i| [0xA2, 0xDC, b'x'][i % 3]));
                value.push(byte);
                value.extend_from_slice(b"0123456789\"  0123456789\"");
                let expected = skip_byte_by_byte(&value, 0);
                assert_eq!(skip(&value), expected, "byte {byte} at {offset}");
                for end in 0..value.len() {
                    assert_eq!(
                        skip(&value[..end]),
                        skip_byte_by_byte(&value[..end], 0),
                        "byte {byte} at {offset}, cut at {end}"
                    );
                }
            }
        }
    }

    #[test]
    fn deep_nesting_must_balance() {
        let depth = 10_000;
        let nested = format!("{}\"x\"{}", "[{\"a\":".repeat(depth), "}]".repeat(depth));
        let body = format!(r#"{{"data": {nested}, "apiCost": {{"duration": 0.004}}}}"#);
        assert_eq!(
            parse_envelope(body.as_bytes()).server_time,
            ServerTime::Reported(4_000)
        );
        let unbalanced = body.replacen("}]", "}", 1);
        assert_eq!(
            parse_envelope(unbalanced.as_bytes()).server_time,
            ServerTime::Missing(MissingReason::NotJson)
        );
    }

    #[test]
    fn truncated_envelope_is_not_json() {
        let body = br#"{"message": "a \"quoted\" } text \\", "data": [{"name": "Item \\\"1\\\"", "tags": ["[", "]", "{\\"], "n": [1, 2.5, {"x": "}"}]}, "0123456789abcdefghij\\"], "rows": 1, "success": true, "statusCode": 200, "apiCost": {"duration": 0.002}}"#;
        let envelope = parse_envelope(body);
        assert_eq!(envelope.success, Some(true));
        assert_eq!(envelope.status_code, Some(200));
        assert_eq!(envelope.server_time, ServerTime::Reported(2_000));
        for end in 0..body.len() {
            assert_eq!(
                parse_envelope(&body[..end]).server_time,
                ServerTime::Missing(MissingReason::NotJson),
                "{}",
                String::from_utf8_lossy(&body[..end])
            );
        }
    }

    #[test]
    fn skip_matches_byte_by_byte_reference() {
        // Random values from bytes that matter to the scan, with runs of
        // letters long enough to fill whole eight-byte words.
        const PIECES: [&[u8]; 16] = [
            b"\"",
            b"\"",
            b"\\",
            b"\\\\",
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b" ",
            b"\n",
            b"abcdefghijk",
            b"|Y_y",
            b"\xA2\xDC\xFB",
            b"1.5",
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut value = Vec::new();
        for _ in 0..20_000 {
            value.clear();
            let first = [&b"\""[..], b"[", b"{", b"t"][(next() % 4) as usize];
            value.extend_from_slice(first);
            for _ in 0..next() % 40 {
                value.extend_from_slice(PIECES[(next() % 16) as usize]);
            }
            assert_eq!(
                skip(&value),
                skip_byte_by_byte(&value, 0),
                "{}",
                String::from_utf8_lossy(&value)
            );
        }
    }

    #[test]
    fn escaped_keys_are_decoded() {
        let body = br#"{"api\u0043ost": {"duration": 0.003}, "succ\u0065ss": false}"#;
        let envelope = parse_envelope(body);
        assert_eq!(envelope.server_time, ServerTime::Reported(3_000));
        assert_eq!(envelope.success, Some(false));
    }

    #[test]
    fn api_cost_pointer_in_every_shape() {
        let at = |body: &str, pointer: &str| {
            let source = ServerTimeSource::Body {
                pointer: ServerTimeSource::parse_pointer(pointer).unwrap(),
                unit: TimeUnit::Milliseconds,
            };
            parse_response(body.as_bytes(), &http::header::HeaderMap::new(), &source).server_time
        };
        let cases = [
            (
                r#"{"apiCost": {"ms": 4}}"#,
                "/apiCost/ms",
                ServerTime::Reported(4_000),
            ),
            (
                r#"{"apiCost": {"ms": 4, "ms": 5}}"#,
                "/apiCost/ms",
                ServerTime::Reported(4_000),
            ),
            (
                r#"{"apiCost": [3, 7]}"#,
                "/apiCost/1",
                ServerTime::Reported(7_000),
            ),
            (
                r#"{"apiCost": [3, 7]}"#,
                "/apiCost/01",
                ServerTime::Missing(MissingReason::Absent),
            ),
            (
                r#"{"apiCost": [3, 7]}"#,
                "/apiCost/2",
                ServerTime::Missing(MissingReason::Absent),
            ),
            (
                r#"{"apiCost": null}"#,
                "/apiCost/ms",
                ServerTime::Missing(MissingReason::Null),
            ),
            (
                r#"{"apiCost": 9}"#,
                "/apiCost/ms",
                ServerTime::Missing(MissingReason::Absent),
            ),
            (
                r#"{"apiCost": "9"}"#,
                "/apiCost/ms",
                ServerTime::Missing(MissingReason::Absent),
            ),
            (r#"{"apiCost": 9}"#, "/apiCost", ServerTime::Reported(9_000)),
            (
                r#"{"apiCost": {"a": {"b": 2}}}"#,
                "/apiCost/a/b",
                ServerTime::Reported(2_000),
            ),
            (
                r#"{"other": 1}"#,
                "/apiCost/ms",
                ServerTime::Missing(MissingReason::Absent),
            ),
        ];
        for (body, pointer, expected) in cases {
            assert_eq!(at(body, pointer), expected, "{pointer} in {body}");
        }
    }

    #[test]
    fn api_cost_span_with_every_pointer() {
        let body = br#"{"apiCost": {"start": "2026-03-31 15:56:56'255", "finish": "2026-03-31 15:56:56'333", "duration": 0.078}}"#;
        for pointer in [
            "/apiCost/duration",
            "/apiCost",
            "/apiCost/start/x",
            "/other",
        ] {
            let source = ServerTimeSource::Body {
                pointer: ServerTimeSource::parse_pointer(pointer).unwrap(),
                unit: TimeUnit::Seconds,
            };
            let envelope = parse_response(body, &http::header::HeaderMap::new(), &source);
            let (start, finish) = envelope.api_cost_span.expect(pointer);
            assert_eq!(finish - start, 78_000, "{pointer}");
        }
    }

    #[test]
    fn server_timing_header_metrics() {
        let mut headers = http::header::HeaderMap::new();
        headers.insert(
            "server-timing",
            "db;dur=3.1, app;dur=12.5;desc=\"a, b\"".parse().unwrap(),
        );
        assert_eq!(
            server_timing(&headers, Some("app")),
            ServerTime::Reported(12_500)
        );
        assert_eq!(server_timing(&headers, None), ServerTime::Reported(15_600));
        assert_eq!(
            server_timing(&headers, Some("cache")),
            ServerTime::Missing(MissingReason::NoHeader)
        );
        assert_eq!(
            server_timing(&http::header::HeaderMap::new(), None),
            ServerTime::Missing(MissingReason::NoHeader)
        );
    }

    #[test]
    fn plain_header_source() {
        let mut headers = http::header::HeaderMap::new();
        headers.insert("x-response-time", "42.5".parse().unwrap());
        let source = ServerTimeSource::Header {
            name: "x-response-time".parse().unwrap(),
            unit: TimeUnit::Milliseconds,
        };
        assert_eq!(
            parse_response(b"not json", &headers, &source).server_time,
            ServerTime::Reported(42_500)
        );
    }

    #[test]
    fn api_cost_timestamps_parse() {
        let envelope = parse_envelope(LOGIN_RESPONSE.as_bytes());
        let (start, finish) = envelope.api_cost_span.unwrap();
        assert_eq!(finish - start, 78_000);
        assert_eq!(
            parse_api_timestamp("2026-03-31 15:56:56'255"),
            parse_api_timestamp("2026-03-31 15:56:56.255")
        );
        assert_eq!(
            parse_api_timestamp("2026-03-31 15:56:56'5").unwrap()
                - parse_api_timestamp("2026-03-31 15:56:56").unwrap(),
            500_000
        );
        assert_eq!(parse_api_timestamp("31/03/2026"), None);
    }

    #[test]
    fn api_timestamps_match_chrono() {
        // Every day from 1600 to 2400, each at a different time of day.
        let mut date = chrono::NaiveDate::from_ymd_opt(1600, 1, 1).unwrap();
        let mut seconds_of_day = 0_u32;
        while date.year() < 2400 {
            let time =
                chrono::NaiveTime::from_num_seconds_from_midnight_opt(seconds_of_day, 0).unwrap();
            let expected = date.and_time(time).and_utc().timestamp_micros() + 123_000;
            let text = format!(
                "{} {}'123",
                date.format("%Y-%m-%d"),
                time.format("%H:%M:%S")
            );
            assert_eq!(parse_api_timestamp(&text), Some(expected), "{text}");
            date = date.succ_opt().unwrap();
            seconds_of_day = (seconds_of_day + 7_919) % 86_400;
        }
    }

    #[test]
    fn impossible_dates_and_times_are_rejected() {
        for text in [
            "2026-02-29 00:00:00'000",
            "2100-02-29 00:00:00'000",
            "2026-04-31 00:00:00'000",
            "2026-13-01 00:00:00'000",
            "2026-00-10 00:00:00'000",
            "2026-01-00 00:00:00'000",
            "2026-01-01 24:00:00'000",
            "2026-01-01 23:60:00'000",
            "2026-01-01 23:59:60'000",
        ] {
            assert_eq!(parse_api_timestamp(text), None, "{text}");
        }
        assert!(parse_api_timestamp("2024-02-29 23:59:59'999").is_some());
        assert!(parse_api_timestamp("2000-02-29 00:00:00'000").is_some());
    }

    #[test]
    fn escaped_api_cost_timestamps_parse() {
        let body = br#"{"apiCost":{"start":"2026-03-31 15:56:56\u0027255","finish":"2026-03-31 15:56:56'300","duration":0.045}}"#;
        let (start, finish) = parse_envelope(body).api_cost_span.unwrap();
        assert_eq!(finish - start, 45_000);
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
