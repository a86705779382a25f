//! The IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! Layout (big-endian): two zero bytes, a type code, the number of dimensions `d`, then `d`
//! u32 sizes, then the elements. The reader checks all of it against the file's length
//! before it allocates, and bounds gzip output by what the header declares.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::DataError;

/// The elements of an IDX file, in their stored type.
///
/// ```
/// use gradus::data::idx::{IdxData, encode_u8, parse_idx};
/// let bytes = encode_u8(&[2, 3], &[1, 2, 3, 4, 5, 6]);
/// let array = parse_idx(&bytes, "in-memory".as_ref())?;
/// assert_eq!(array.data, IdxData::U8(vec![1, 2, 3, 4, 5, 6]));
/// # Ok::<(), gradus::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum IdxData {
    /// Type code 0x08.
    U8(Vec<u8>),
    /// Type code 0x09.
    I8(Vec<i8>),
    /// Type code 0x0B.
    I16(Vec<i16>),
    /// Type code 0x0C.
    I32(Vec<i32>),
    /// Type code 0x0D.
    F32(Vec<f32>),
    /// Type code 0x0E.
    F64(Vec<f64>),
}

/// An IDX array: its dimensions and elements in row-major order.
///
/// ```
/// use gradus::data::idx::{IdxData, encode_u8, parse_idx};
/// let bytes = encode_u8(&[2, 3], &[1, 2, 3, 4, 5, 6]);
/// let array = parse_idx(&bytes, "in-memory".as_ref())?;
/// assert_eq!(array.dims, [2, 3]);
/// # Ok::<(), gradus::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    /// Sizes of the dimensions.
    pub dims: Vec<usize>,
    /// The elements.
    pub data: IdxData,
}

/// Gzip output is refused beyond this many times the compressed size (deflate cannot do
/// better than about 1032:1), so a forged header cannot make the reader allocate without bound.
const MAX_GZIP_RATIO: u64 = 1100;

/// The default limit on an IDX file's decoded size (256 MiB; MNIST's largest file is 47 MB):
/// a small gzip file may declare, and hold, gigabytes of zeros. [`read_idx_limited`] and
/// `Mnist::load_with_limit` raise it.
pub const MAX_DECODED_BYTES: u64 = 256 << 20;

fn format_error(path: &Path, problem: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Reads an IDX file (raw, or gzip if it starts with the gzip magic).
///
/// ```
/// use gradus::data::idx::{read_idx, IdxData};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("labels-idx1-ubyte");
/// std::fs::write(&path, [0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]).unwrap();
/// let a = read_idx(&path).unwrap();
/// assert_eq!(a.dims, vec![3]);
/// assert_eq!(a.data, IdxData::U8(vec![7, 2, 1]));
/// ```
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    read_idx_limited(path, MAX_DECODED_BYTES)
}

/// [`read_idx`] with another limit on the decoded size, in bytes.
///
/// ```
/// use gradus::data::idx::{encode_u8, read_idx_limited};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("big-idx1-ubyte");
/// std::fs::write(&path, encode_u8(&[1000], &[0; 1000])).unwrap();
/// let err = read_idx_limited(&path, 100).unwrap_err().to_string();
/// assert!(err.contains("more than the limit of 100 bytes"), "{err}");
/// assert!(read_idx_limited(&path, 2000).is_ok());
/// ```
pub fn read_idx_limited(path: &Path, max_decoded: u64) -> Result<IdxArray, DataError> {
    let bytes = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => DataError::Missing {
            path: path.to_path_buf(),
            hint: String::new(),
        },
        _ => DataError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        parse_idx_limited(&bytes, path, max_decoded)
    } else {
        check_limit(bytes.len() as u64, max_decoded, path)?;
        parse_raw(bytes, path)
    }
}

fn check_limit(size: u64, max_decoded: u64, path: &Path) -> Result<(), DataError> {
    if size > max_decoded {
        return Err(format_error(
            path,
            format!(
                "declares {size} bytes of data, more than the limit of {max_decoded} bytes \
                 (raise it with read_idx_limited or Mnist::load_with_limit)"
            ),
        ));
    }
    Ok(())
}

/// Parses IDX bytes (raw or gzip) with the default decoded-size limit; `path` is used in
/// errors only.
///
/// ```
/// use gradus::data::idx::{IdxData, encode_u8, parse_idx};
/// let bytes = encode_u8(&[2, 3], &[1, 2, 3, 4, 5, 6]);
/// let array = parse_idx(&bytes, "in-memory".as_ref())?;
/// assert_eq!(array.dims, [2, 3]);
/// // A damaged file is an error naming the path, not a panic:
/// let err = parse_idx(&bytes[..10], "cut.idx".as_ref()).unwrap_err();
/// assert!(err.to_string().contains("cut.idx"));
/// # Ok::<(), gradus::DataError>(())
/// ```
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray, DataError> {
    parse_idx_limited(bytes, path, MAX_DECODED_BYTES)
}

/// [`parse_idx`] with another limit on the decoded size, in bytes. A gzip stream is decoded
/// straight into the array's storage, after its header has been checked against the limit.
///
/// ```
/// use gradus::data::idx::{encode_u8, parse_idx_limited};
/// let bytes = encode_u8(&[100], &[0; 100]); // 8 bytes of header, 100 of data
/// assert!(parse_idx_limited(&bytes, "a.idx".as_ref(), 108).is_ok());
/// let err = parse_idx_limited(&bytes, "a.idx".as_ref(), 107).unwrap_err();
/// assert!(err.to_string().contains("more than the limit of 107 bytes"));
/// ```
pub fn parse_idx_limited(
    bytes: &[u8],
    path: &Path,
    max_decoded: u64,
) -> Result<IdxArray, DataError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let limit = (bytes.len() as u64).saturating_mul(MAX_GZIP_RATIO);
        // Several gzip members one after the other are one stream (RFC 1952; pigz and `cat a.gz
        // b.gz` write them).
        let mut decoder = flate2::read::MultiGzDecoder::new(bytes);
        // The header first (at most 4 + 4 * 255 bytes), then exactly the declared payload.
        let mut head = vec![0u8; 4];
        decoder
            .read_exact(&mut head)
            .map_err(|e| format_error(path, format!("gzip stream: {e}")))?;
        let ndim = head[3] as usize;
        let mut dims = vec![0u8; 4 * ndim];
        decoder.read_exact(&mut dims).map_err(|e| {
            format_error(
                path,
                format!("header with {ndim} dimensions is cut short ({e})"),
            )
        })?;
        head.extend_from_slice(&dims);
        let (_, expected) = header(&head, path)?;
        let total = head.len() as u64 + expected;
        if total > limit {
            return Err(format_error(
                path,
                format!(
                    "header declares {total} bytes, more than a {} byte gzip file can hold",
                    bytes.len()
                ),
            ));
        }
        check_limit(total, max_decoded, path)?;
        // One byte more than declared, so reading a trailing byte (an error) does not grow it.
        let mut raw = Vec::with_capacity(total as usize + 1);
        raw.extend_from_slice(&head);
        (&mut decoder)
            .take(expected + 1)
            .read_to_end(&mut raw)
            .map_err(|e| format_error(path, format!("gzip stream: {e}")))?;
        parse_raw(raw, path)
    } else {
        check_limit(bytes.len() as u64, max_decoded, path)?;
        parse_raw(bytes.to_vec(), path)
    }
}

/// Checks magic and dimensions; returns the dims and the payload size in bytes.
fn header(bytes: &[u8], path: &Path) -> Result<(Vec<usize>, u64), DataError> {
    if bytes.len() < 4 {
        return Err(format_error(
            path,
            format!(
                "file is {} bytes, shorter than the 4-byte magic",
                bytes.len()
            ),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format_error(
            path,
            format!(
                "magic starts with {:02x} {:02x}, expected 00 00",
                bytes[0], bytes[1]
            ),
        ));
    }
    let size = match bytes[2] {
        0x08 | 0x09 => 1,
        0x0B => 2,
        0x0C | 0x0D => 4,
        0x0E => 8,
        other => {
            return Err(format_error(
                path,
                format!("unknown element type code 0x{other:02x}"),
            ));
        }
    };
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err(format_error(path, "0 dimensions"));
    }
    let header_len = 4 + 4 * ndim;
    if bytes.len() < header_len {
        return Err(format_error(
            path,
            format!(
                "header with {ndim} dimensions needs {header_len} bytes, file has {}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let payload = count.and_then(|c| c.checked_mul(size)).ok_or_else(|| {
        format_error(
            path,
            format!("dimensions {dims:?} overflow the addressable size"),
        )
    })?;
    Ok((dims, payload))
}

/// Parses an uncompressed IDX file held in `bytes`, whose storage becomes the array's for
/// unsigned bytes (no copy).
fn parse_raw(mut bytes: Vec<u8>, path: &Path) -> Result<IdxArray, DataError> {
    let (dims, payload) = header(&bytes, path)?;
    let start = 4 + 4 * dims.len();
    let found = (bytes.len() - start) as u64;
    if found != payload {
        let what = if found < payload {
            "truncated"
        } else {
            "has trailing bytes"
        };
        return Err(format_error(
            path,
            format!("{what}: dimensions {dims:?} need {payload} bytes of data, found {found}"),
        ));
    }
    if bytes[2] == 0x08 {
        bytes.drain(..start);
        return Ok(IdxArray {
            dims,
            data: IdxData::U8(bytes),
        });
    }
    let body = &bytes[start..];
    let data = match bytes[2] {
        0x08 => unreachable!("handled above"),
        0x09 => IdxData::I8(body.iter().map(|&b| b as i8).collect()),
        0x0B => IdxData::I16(
            body.chunks_exact(2)
                .map(|c| i16::from_be_bytes([c[0], c[1]]))
                .collect(),
        ),
        0x0C => IdxData::I32(
            body.chunks_exact(4)
                .map(|c| i32::from_be_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        0x0D => IdxData::F32(
            body.chunks_exact(4)
                .map(|c| f32::from_be_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        _ => IdxData::F64(
            body.chunks_exact(8)
                .map(|c| f64::from_be_bytes(c.try_into().unwrap()))
                .collect(),
        ),
    };
    Ok(IdxArray { dims, data })
}

/// Reads a `u8` IDX file with the expected number of dimensions.
pub(crate) fn read_u8(
    path: &Path,
    ndim: usize,
    max_decoded: u64,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let a = read_idx_limited(path, max_decoded)?;
    if a.dims.len() != ndim {
        return Err(format_error(
            path,
            format!(
                "expected {ndim} dimensions, found {} ({:?})",
                a.dims.len(),
                a.dims
            ),
        ));
    }
    match a.data {
        IdxData::U8(v) => Ok((a.dims, v)),
        other => Err(format_error(
            path,
            format!(
                "expected unsigned bytes (type 0x08), found {}",
                type_name(&other)
            ),
        )),
    }
}

fn type_name(d: &IdxData) -> &'static str {
    match d {
        IdxData::U8(_) => "u8",
        IdxData::I8(_) => "i8",
        IdxData::I16(_) => "i16",
        IdxData::I32(_) => "i32",
        IdxData::F32(_) => "f32",
        IdxData::F64(_) => "f64",
    }
}

/// Encodes a `u8` array as IDX (for tests and tools).
///
/// ```
/// let bytes = gradus::data::idx::encode_u8(&[2], &[7, 9]);
/// assert_eq!(bytes, [0, 0, 0x08, 1, 0, 0, 0, 2, 7, 9]); // magic, type u8, 1 dim, size 2, data
/// ```
pub fn encode_u8(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// `path`, or `path.gz` if only that exists.
pub(crate) fn with_optional_gz(dir: &Path, name: &str) -> Option<PathBuf> {
    let raw = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if raw.is_file() {
        Some(raw)
    } else if gz.is_file() {
        Some(gz)
    } else {
        None
    }
}
