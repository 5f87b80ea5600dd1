//! Micro-benchmarks of the work parallax does for every response it receives:
//! parsing the envelope and recording the sample into the HDR histograms.
//!
//! The goal these are measured against is under 1 µs per request for parse
//! and record together. Run them with `cargo bench --bench hot_path`;
//! docs/performance.md lists the figures and the machine they came from.
//!
//! Each benchmark processes one response or one sample per iteration, so the
//! time criterion reports is the cost per request.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use parallax::api::{parse_response, ServerTimeSource};
use parallax::metrics::{
    ClockSample, Correction, Outcome, Recorder, ResponseDetails, Sample, ServerTime, StatsSet,
};
use reqwest::header::HeaderMap;

/// The login response of the API documentation, as the server sends it
/// (compact, one line). The member's e-mail is replaced by a demo-domain one.
const LOGIN_RESPONSE: &str = concat!(
    r#"{"success":true,"statusCode":200,"message":"Login Success.","#,
    r#""data":{"token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e-ri73ScUYQaO8RiIJvLE","#,
    r#""member":{"id":1,"code":"1881-E62B-7341-A","name":"user","#,
    r#""email":"user1@demo.test","member":1,"status":"active"}},"#,
    r#""rows":2,"apiCost":{"start":"2026-03-31 15:56:56'255","#,
    r#""finish":"2026-03-31 15:56:56'333","duration":0.078}}"#
);

/// A typical short list response: two small items in `data`, about 250 bytes.
const LIST_RESPONSE: &str = concat!(
    r#"{"success":true,"statusCode":200,"message":"Success.","data":["#,
    r#"{"id":1,"name":"Item 1","price":1.99},{"id":2,"name":"Item 2","price":2.99}],"#,
    r#""rows":2,"apiCost":{"start":"2026-03-31 15:56:56'255","#,
    r#""finish":"2026-03-31 15:56:56'257","duration":0.002}}"#
);

/// The list response of the embedded target (`GET /api/items`): ten items,
/// 940 bytes, the body every request of the peer comparison parses.
const EMBEDDED_LIST_RESPONSE: &str = concat!(
    r#"{"success":true,"statusCode":200,"message":"Success.","data":["#,
    r#"{"code":"ITEM-00001","id":1,"name":"Item 1","price":1.99,"status":"active"},"#,
    r#"{"code":"ITEM-00002","id":2,"name":"Item 2","price":2.99,"status":"active"},"#,
    r#"{"code":"ITEM-00003","id":3,"name":"Item 3","price":3.99,"status":"active"},"#,
    r#"{"code":"ITEM-00004","id":4,"name":"Item 4","price":4.99,"status":"active"},"#,
    r#"{"code":"ITEM-00005","id":5,"name":"Item 5","price":5.99,"status":"active"},"#,
    r#"{"code":"ITEM-00006","id":6,"name":"Item 6","price":6.99,"status":"active"},"#,
    r#"{"code":"ITEM-00007","id":7,"name":"Item 7","price":7.99,"status":"active"},"#,
    r#"{"code":"ITEM-00008","id":8,"name":"Item 8","price":8.99,"status":"active"},"#,
    r#"{"code":"ITEM-00009","id":9,"name":"Item 9","price":9.99,"status":"active"},"#,
    r#"{"code":"ITEM-00010","id":10,"name":"Item 10","price":10.99,"status":"active"}],"#,
    r#""rows":10,"apiCost":{"start":"2026-03-31 15:56:56'255","#,
    r#""finish":"2026-03-31 15:56:56'255","duration":0.000028223}}"#
);

/// Index of the one request endpoint, after the login endpoint at 0.
const LIST_ENDPOINT: usize = 1;

/// Endpoints of the benchmarked stats: login plus one request.
const ENDPOINT_COUNT: usize = 2;

/// Number of distinct samples cycled through, so that the histograms see
/// spread-out values as in a run instead of one bucket over and over.
const SAMPLE_COUNT: usize = 4096;

/// Deterministic pseudo-random numbers (xorshift64*), so every run records
/// the same values.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Draws a value between `low` and `high` microseconds, skewed to the
    /// low end like a latency distribution: the minimum of two uniform draws.
    fn latency_us(&mut self, low: u64, high: u64) -> u64 {
        let span = high - low;
        low + (self.next() % span).min(self.next() % span)
    }
}

/// Open-model samples of successful list requests, as the user loop builds
/// them: raw and corrected latency, schedule lag, server time and a clock
/// estimate. They are the costliest kind to record, with five histograms.
fn open_model_samples() -> Vec<Sample> {
    let mut random = Xorshift(0x9E37_79B9_7F4A_7C15);
    (0..SAMPLE_COUNT)
        .map(|_| {
            let server_us = random.latency_us(1_500, 20_000);
            let attempt_us = server_us + random.latency_us(80, 2_000);
            let lag_us = random.latency_us(20, 500);
            let sent_us = 1_774_972_616_000_000 + random.latency_us(0, 1_000_000) as i64;
            Sample {
                endpoint: LIST_ENDPOINT,
                outcome: Outcome::Ok,
                latency_us: attempt_us,
                attempt_us,
                correction: Correction::IntendedStart {
                    latency_us: attempt_us + lag_us,
                    lag_us,
                },
                server_time: ServerTime::Reported(server_us),
                details: ResponseDetails {
                    status_code_mismatch: false,
                    api_cost_mismatch: false,
                    clock: Some(ClockSample::estimate(
                        sent_us,
                        sent_us + attempt_us as i64,
                        sent_us + 40,
                        sent_us + 40 + server_us as i64,
                    )),
                },
            }
        })
        .collect()
}

/// Stats that have already recorded every sample once, so the benchmark
/// measures steady-state recording, not the histograms' first growth.
fn warmed_stats(samples: &[Sample]) -> StatsSet {
    let mut stats = StatsSet::new(ENDPOINT_COUNT);
    samples.iter().for_each(|sample| stats.record(sample));
    stats
}

/// Builds the sample of one parsed list response the way the user loop does:
/// outcome from the status and `success`, server time from the envelope,
/// clock estimate from the `apiCost` span.
fn sample_from_body(body: &[u8], source: &ServerTimeSource, template: &Sample) -> Sample {
    let envelope = parse_response(body, &HeaderMap::new(), source);
    let outcome = if envelope.success == Some(false) {
        Outcome::AppError
    } else {
        Outcome::Ok
    };
    let clock = envelope.api_cost_span.map(|(start, finish)| {
        ClockSample::estimate(
            start - 300,
            finish + template.attempt_us as i64,
            start,
            finish,
        )
    });
    Sample {
        outcome,
        server_time: envelope.server_time,
        details: ResponseDetails {
            status_code_mismatch: envelope.status_code.is_some_and(|code| code != 200),
            api_cost_mismatch: false,
            clock,
        },
        ..*template
    }
}

fn parse(c: &mut Criterion) {
    let source = ServerTimeSource::default();
    let headers = HeaderMap::new();
    let mut group = c.benchmark_group("parse_response");
    let bodies = [
        ("login", LOGIN_RESPONSE),
        ("list", LIST_RESPONSE),
        ("embedded_list", EMBEDDED_LIST_RESPONSE),
    ];
    for (name, body) in bodies {
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{name}_{}_bytes", body.len()), |b| {
            b.iter(|| parse_response(black_box(body.as_bytes()), &headers, &source))
        });
    }
    group.finish();
}

fn record(c: &mut Criterion) {
    let samples = open_model_samples();
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(1));

    let mut stats = warmed_stats(&samples);
    let mut next = 0;
    group.bench_function("stats_set_open_model_sample", |b| {
        b.iter(|| {
            stats.record(black_box(&samples[next % SAMPLE_COUNT]));
            next += 1;
        })
    });

    // The path a virtual user takes: lock its shard, then record.
    let recorder = Recorder::new(ENDPOINT_COUNT, 1);
    samples.iter().for_each(|sample| recorder.record(0, sample));
    let mut next = 0;
    group.bench_function("recorder_shard_open_model_sample", |b| {
        b.iter(|| {
            recorder.record(black_box(7), black_box(&samples[next % SAMPLE_COUNT]));
            next += 1;
        })
    });

    // A first record into fresh histograms allocates their buckets. It
    // happens once per histogram and run, not per request.
    group.bench_function("stats_set_first_sample_into_empty", |b| {
        b.iter_batched_ref(
            || StatsSet::new(ENDPOINT_COUNT),
            |stats| stats.record(black_box(&samples[0])),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn parse_and_record(c: &mut Criterion) {
    let samples = open_model_samples();
    let source = ServerTimeSource::default();
    let mut group = c.benchmark_group("parse_and_record");
    group.throughput(Throughput::Elements(1));

    for (name, body) in [
        ("list", LIST_RESPONSE),
        ("embedded_list", EMBEDDED_LIST_RESPONSE),
    ] {
        let mut stats = warmed_stats(&samples);
        let mut next = 0;
        group.bench_function(format!("{name}_{}_bytes_into_stats_set", body.len()), |b| {
            b.iter(|| {
                let template = &samples[next % SAMPLE_COUNT];
                let sample = sample_from_body(black_box(body.as_bytes()), &source, template);
                stats.record(&sample);
                next += 1;
            })
        });
    }

    let recorder = Recorder::new(ENDPOINT_COUNT, 1);
    samples.iter().for_each(|sample| recorder.record(0, sample));
    let user = AtomicUsize::new(0);
    group.bench_function(
        format!("list_{}_bytes_into_recorder", LIST_RESPONSE.len()),
        |b| {
            b.iter(|| {
                let index = user.fetch_add(1, Ordering::Relaxed);
                let template = &samples[index % SAMPLE_COUNT];
                let sample =
                    sample_from_body(black_box(LIST_RESPONSE.as_bytes()), &source, template);
                recorder.record(index, &sample);
            })
        },
    );
    group.finish();
}

criterion_group!(benches, parse, record, parse_and_record);
criterion_main!(benches);
