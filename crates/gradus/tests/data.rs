//! IDX reading, MNIST loading and batching.

use std::io::Write;
use std::path::Path;

use gradus::data::idx::{IdxData, encode_u8, parse_idx, read_idx};
use gradus::data::mnist::{Mnist, Provenance};
use gradus::ndarray::ArrayD;
use gradus::{BatchSize, DataError, Dataset};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn problem(e: DataError) -> String {
    match e {
        DataError::Format { problem, .. } => problem,
        other => panic!("expected a format error, got {other}"),
    }
}

#[test]
fn valid_idx_files_raw_and_gzip() {
    let bytes = encode_u8(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    for data in [bytes.clone(), gzip(&bytes)] {
        let a = parse_idx(&data, Path::new("x")).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, IdxData::U8(vec![1, 2, 3, 4, 5, 6]));
    }
    // Other element types are big-endian.
    let mut f32s = vec![0, 0, 0x0D, 1, 0, 0, 0, 2];
    f32s.extend_from_slice(&1.5f32.to_be_bytes());
    f32s.extend_from_slice(&(-2.0f32).to_be_bytes());
    assert_eq!(
        parse_idx(&f32s, Path::new("x")).unwrap().data,
        IdxData::F32(vec![1.5, -2.0])
    );
}

#[test]
fn damaged_idx_files_give_typed_errors_naming_the_problem() {
    let good = encode_u8(&[4, 2], &[0; 8]);
    let path = Path::new("images.idx");
    let truncated = problem(parse_idx(&good[..good.len() - 3], path).unwrap_err());
    assert!(
        truncated.contains("truncated") && truncated.contains("need 8 bytes of data, found 5"),
        "{truncated}"
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(problem(parse_idx(&trailing, path).unwrap_err()).contains("trailing"));
    let mut bad_magic = good.clone();
    bad_magic[0] = 7;
    assert!(problem(parse_idx(&bad_magic, path).unwrap_err()).contains("magic starts with 07 00"));
    let mut bad_type = good.clone();
    bad_type[2] = 0x42;
    assert!(
        problem(parse_idx(&bad_type, path).unwrap_err()).contains("unknown element type code 0x42")
    );
    assert!(
        problem(parse_idx(&good[..6], path).unwrap_err())
            .contains("header with 2 dimensions needs 12 bytes")
    );
    assert!(
        problem(parse_idx(&[0, 0], path).unwrap_err()).contains("shorter than the 4-byte magic")
    );
    // A forged count of 2^32-1 in every dimension: refused from the header, nothing allocated.
    let forged = [
        0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 1,
    ];
    assert!(problem(parse_idx(&forged, path).unwrap_err()).contains("overflow"));
    let huge_count = [0, 0, 8, 1, 255, 255, 255, 255, 1];
    assert!(
        problem(parse_idx(&huge_count, path).unwrap_err())
            .contains("need 4294967295 bytes of data, found 1")
    );
    let forged_gz = gzip(&huge_count);
    assert!(problem(parse_idx(&forged_gz, path).unwrap_err()).contains("more than a"));
    // A gzip stream cut short.
    let gz = gzip(&encode_u8(&[1000], &[7; 1000]));
    assert!(parse_idx(&gz[..gz.len() / 2], path).is_err());
    // The error names the file.
    let err = parse_idx(&bad_magic, path).unwrap_err().to_string();
    assert!(err.starts_with("images.idx: not a valid IDX file"), "{err}");
}

fn write_mnist(dir: &Path, train: usize, train_labels: usize, label_value: u8) {
    let img = |n: usize| encode_u8(&[n, 2, 2], &vec![255; n * 4]);
    let lab = |n: usize| encode_u8(&[n], &vec![label_value; n]);
    std::fs::write(dir.join("train-images-idx3-ubyte"), img(train)).unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte.gz"),
        gzip(&lab(train_labels)),
    )
    .unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), img(3)).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), lab(3)).unwrap();
}

#[test]
fn mnist_layout_loads_and_checks_counts_labels_and_provenance() {
    let dir = tempfile::tempdir().unwrap();
    write_mnist(dir.path(), 5, 5, 3);
    let m = Mnist::load(dir.path()).unwrap();
    assert_eq!((m.train.len(), m.test.len(), m.image_size), (5, 3, (2, 2)));
    assert_eq!(m.train.inputs().shape(), &[5, 4]);
    assert!(
        m.train.inputs().iter().all(|&v| v == 1.0),
        "pixels scaled to [0, 1]"
    );
    assert!(matches!(m.provenance, Provenance::Unknown(ref notes) if notes.len() == 4));

    write_mnist(dir.path(), 5, 4, 3);
    let err = Mnist::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("5 images but 4 labels"), "{err}");

    write_mnist(dir.path(), 5, 5, 11);
    let err = Mnist::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("label 0 is 11, expected a digit 0-9"), "{err}");

    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let err = Mnist::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("t10k-labels-idx1-ubyte")
            && err.contains("Mnist::load needs a directory")
            && !err.contains("MNIST_DIR"),
        "{err}"
    );
}

fn repo_mnist() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

#[test]
fn the_real_mnist_files_load_with_verified_checksums() {
    let m = Mnist::load(repo_mnist()).unwrap();
    assert_eq!(m.provenance, Provenance::Mnist);
    assert_eq!(
        (m.train.len(), m.test.len(), m.image_size),
        (60_000, 10_000, (28, 28))
    );
    let labels = m.train.labels().unwrap();
    let mut counts = [0usize; 10];
    labels.iter().for_each(|&l| counts[l] += 1);
    // The well-known class counts of the MNIST training set.
    assert_eq!(
        counts,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    let max = m.train.inputs().iter().fold(0.0f32, |a, &b| a.max(b));
    assert_eq!(max, 1.0);
}

#[test]
fn fashion_mnist_loads_unchanged_when_installed() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.is_dir() {
        eprintln!("skipped: apt-get install dataset-fashion-mnist to run this test");
        return;
    }
    let m = Mnist::load(dir).unwrap();
    assert_eq!(m.provenance, Provenance::FashionMnist);
    assert_eq!((m.train.len(), m.test.len()), (60_000, 10_000));
}

#[test]
fn read_idx_reports_a_missing_file() {
    let err = read_idx(Path::new("/nonexistent/file-idx1-ubyte")).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }));
}

#[test]
fn batches_cover_every_sample_once_per_epoch_and_shuffle_reproducibly() {
    let n = 103;
    let d =
        Dataset::<f32>::classification(ArrayD::zeros(vec![n, 3]), (0..n).map(|i| i % 10).collect())
            .unwrap();
    for bs in [
        BatchSize::Mini(10),
        BatchSize::Stochastic,
        BatchSize::Full,
        BatchSize::Mini(500),
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let batches = d.epoch_batches(bs, Some(&mut rng), false);
        let mut all: Vec<usize> = batches.concat();
        all.sort();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "{bs:?}");
        assert_eq!(batches[0].len(), bs.samples(n));
    }
    let epoch = |seed| {
        d.epoch_batches(
            BatchSize::Mini(10),
            Some(&mut ChaCha8Rng::seed_from_u64(seed)),
            false,
        )
    };
    assert_eq!(epoch(5), epoch(5));
    assert_ne!(epoch(5), epoch(6));
    assert_ne!(epoch(5).concat(), (0..n).collect::<Vec<_>>(), "shuffled");
    // Consecutive epochs from one rng differ.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (a, b) = (
        d.epoch_batches(BatchSize::Mini(10), Some(&mut rng), false),
        d.epoch_batches(BatchSize::Mini(10), Some(&mut rng), false),
    );
    assert_ne!(a, b);
    let dropped = d.epoch_batches(BatchSize::Mini(10), None, true);
    assert_eq!(dropped.len(), 10);
    assert!(dropped.iter().all(|b| b.len() == 10));
    // The split is seeded and disjoint.
    let (train, valid) = d.split(0.2, 3);
    assert_eq!((train.len(), valid.len()), (82, 21));
    assert_eq!(d.split(0.2, 3).1, valid);
    assert!(Dataset::<f32>::classification(ArrayD::zeros(vec![3, 2]), vec![0, 1]).is_err());
}

#[test]
fn multi_member_gzip_is_one_stream() {
    // pigz and `cat a.gz b.gz` write several members; RFC 1952 reads them as one.
    let bytes = encode_u8(&[6], &[1, 2, 3, 4, 5, 6]);
    let mut two = gzip(&bytes[..7]);
    two.extend(gzip(&bytes[7..]));
    let a = parse_idx(&two, Path::new("labels.gz")).unwrap();
    assert_eq!(a.data, IdxData::U8(vec![1, 2, 3, 4, 5, 6]));
}

#[test]
fn an_image_size_beyond_the_limit_is_an_error_not_a_panic() {
    // 0 images of (2^32 - 1) x (2^32 - 1) pixels: a 16-byte header.
    let dir = tempfile::tempdir().unwrap();
    write_mnist(dir.path(), 3, 3, 1);
    let mut header = vec![0, 0, 8, 3, 0, 0, 0, 0];
    header.extend([0xff; 8]);
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), &header).unwrap();
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte.gz"),
        gzip(&encode_u8(&[0], &[])),
    )
    .unwrap();
    let err = Mnist::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("at most 16777216 pixels an image"), "{err}");
}
