#![no_main]
//! The safetensors importer on arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gradus::checkpoint::parse_safetensors::<f32>(data, std::path::Path::new("fuzz"));
});
