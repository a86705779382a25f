#![no_main]
//! The weights / checkpoint loader on arbitrary bytes. Most mutations fail the checksum, so
//! the input's last 32 bytes are replaced by a valid SHA-256 half of the time, letting the
//! fuzzer reach the header and payload parsing behind it.
use gradus::checkpoint::parse_weights;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz");
    let _ = parse_weights::<f32>(data, path);
    if data.len() > 32 && data[data.len() - 1] & 1 == 1 {
        let mut fixed = data[..data.len() - 32].to_vec();
        let digest = Sha256::digest(&fixed);
        fixed.extend_from_slice(&digest);
        let _ = parse_weights::<f32>(&fixed, path);
        let _ = parse_weights::<f64>(&fixed, path);
    }
});
