//! Fuzzes the header side of server time: `server_timing` over
//! `Server-Timing` values, and `number_in`, which reads every `dur` and every
//! plain time header.
//!
//! Input: `[METRIC \0] VALUE [\n VALUE]...`. Without a NUL byte there is no
//! metric name and every `dur` is summed. Each line becomes one
//! `Server-Timing` header; lines that are not valid header values are
//! dropped, as the HTTP client would never hand them over.

#![no_main]

use libfuzzer_sys::fuzz_target;
use parallax::api::{number_in, server_timing, TimeUnit};
use parallax::metrics::{MissingReason, ServerTime, MAX_LATENCY_US};
use http::header::{HeaderMap, HeaderValue};

fuzz_target!(|data: &[u8]| {
    let (metric, values) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (Some(&data[..nul]), &data[nul + 1..]),
        None => (None, data),
    };
    let metric = match metric.map(std::str::from_utf8) {
        Some(Ok(name)) => Some(name),
        Some(Err(_)) => return,
        None => None,
    };
    let lines: Vec<HeaderValue> = values
        .split(|&b| b == b'\n')
        .filter_map(|line| HeaderValue::from_bytes(line).ok())
        .collect();

    let mut headers = HeaderMap::new();
    for line in &lines {
        headers.append("server-timing", line.clone());
    }
    let split = server_timing(&headers, metric);
    check_bounds(&split);

    // HTTP treats repeated fields as one field joined by commas, so the
    // result must not depend on how the metrics were spread over lines, as
    // long as no line leaves a quoted string open.
    let texts: Vec<&str> = lines.iter().filter_map(|v| v.to_str().ok()).collect();
    let balanced = texts.iter().all(|text| text.matches('"').count() % 2 == 0);
    if balanced && texts.len() == lines.len() && texts.len() > 1 {
        let mut joined = HeaderMap::new();
        joined.insert(
            "server-timing",
            HeaderValue::from_str(&texts.join(", ")).expect("joined valid values stay valid"),
        );
        assert_eq!(
            server_timing(&joined, metric),
            split,
            "{texts:?} read differently as one joined value"
        );
    }

    if let Ok(text) = std::str::from_utf8(values) {
        check_number(text);
    }
});

fn check_bounds(time: &ServerTime) {
    if let ServerTime::Reported(micros) = time {
        assert!(*micros <= MAX_LATENCY_US, "{micros} us is above the cap");
    }
}

/// `number_in` on raw text: `null` is never a value, a value is within the
/// cap, and the same text read in two units agrees to within rounding.
fn check_number(text: &str) {
    let seconds = number_in(text, TimeUnit::Seconds);
    let millis = number_in(text, TimeUnit::Milliseconds);
    let micros = number_in(text, TimeUnit::Microseconds);
    for time in [&seconds, &millis, &micros] {
        check_bounds(time);
    }
    if text.trim() == "null" {
        for time in [seconds, millis, micros] {
            assert_eq!(time, ServerTime::Missing(MissingReason::Null), "{text:?}");
        }
        return;
    }
    // Each unit rounds to whole microseconds once, so a coarser unit can be
    // off by at most half its factor from the finer one.
    if let (ServerTime::Reported(s), ServerTime::Reported(ms)) = (seconds, millis) {
        let gap = s.abs_diff(ms * 1000);
        assert!(gap <= 500, "{text:?}: {s} us as seconds, {ms} us as ms");
    }
    if let (ServerTime::Reported(ms), ServerTime::Reported(us)) = (millis, micros) {
        let gap = ms.abs_diff(us * 1000);
        assert!(gap <= 500, "{text:?}: {ms} us as ms, {us} us as us");
    }
}
