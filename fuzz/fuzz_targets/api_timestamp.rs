//! Fuzzes `parse_api_timestamp`, the reader of `apiCost.start` and `finish`.
//!
//! Input: the timestamp text. Inputs that are not UTF-8 are skipped, since
//! the parser only receives the values of JSON strings. Beyond not
//! panicking, a value it returns must be whole milliseconds and must survive
//! being written in the documented form and read back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use parallax::api::parse_api_timestamp;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(micros) = parse_api_timestamp(text) else {
        return;
    };

    // parallax reads the fixed positions itself, so chrono's parser of the
    // same form checks the date and time arithmetic. A result means the
    // first 19 bytes are ASCII.
    let date_time = &text.trim()[..19];
    let reference = chrono::NaiveDateTime::parse_from_str(date_time, "%Y-%m-%d %H:%M:%S")
        .unwrap_or_else(|error| {
            panic!("{text:?} gave {micros} us, but chrono rejects it: {error}")
        });
    assert_eq!(
        micros.div_euclid(1_000_000),
        reference.and_utc().timestamp(),
        "{text:?}: whole seconds differ from chrono's reading"
    );
    assert_eq!(
        micros.rem_euclid(1000),
        0,
        "{text:?} gave {micros} us, which is not whole milliseconds"
    );

    let canonical = chrono::DateTime::from_timestamp_micros(micros)
        .expect("a parsed timestamp is within chrono's range")
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S'%3f")
        .to_string();
    assert_eq!(
        parse_api_timestamp(&canonical),
        Some(micros),
        "{text:?} gave {micros} us, but its canonical form {canonical:?} reads differently"
    );

    // The apostrophe and the dot are documented as the same separator.
    if !text.contains('.') {
        let dotted = text.replacen('\'', ".", 1);
        assert_eq!(
            parse_api_timestamp(&dotted),
            Some(micros),
            "{text:?} and {dotted:?} read differently"
        );
    }
});
