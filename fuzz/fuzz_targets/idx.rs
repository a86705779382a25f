#![no_main]
//! The IDX reader on arbitrary bytes (raw, or gzip when they start with its magic).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gradus::data::idx::parse_idx(data, std::path::Path::new("fuzz"));
});
