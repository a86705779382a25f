//! MNIST (and anything in its layout, such as Fashion-MNIST): four IDX files, raw or gzip.

use std::path::{Path, PathBuf};

use gradus_autograd::ndarray::ArrayD;
use sha2::{Digest, Sha256};

pub use super::idx::MAX_DECODED_BYTES;
use super::idx::{read_u8, with_optional_gz};
use crate::{DataError, Dataset};

/// The largest image the loader accepts (4096 x 4096): a header may declare any size, and
/// every model built from the data's size would be sized by it.
pub const MAX_IMAGE_PIXELS: usize = 1 << 24;

/// The four file names (each may also be present with a `.gz` suffix).
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// SHA-256 of the uncompressed bytes of the original MNIST files.
const MNIST_SHA256: [&str; 4] = [
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
];

/// SHA-256 of the uncompressed bytes of Zalando's Fashion-MNIST files, as Debian's
/// `dataset-fashion-mnist` package ships them.
const FASHION_SHA256: [&str; 4] = [
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
];

/// Which known dataset the files' checksums identify.
///
/// ```no_run
/// use gradus::{Mnist, data::mnist::Provenance};
/// let mnist = Mnist::load_default()?;
/// assert_eq!(mnist.provenance, Provenance::Mnist);
/// # Ok::<(), gradus::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// All four files are the original MNIST.
    Mnist,
    /// All four files are the original Fashion-MNIST.
    FashionMnist,
    /// At least one file matches neither; each entry names it and its checksum.
    Unknown(Vec<String>),
}

/// The train and test sets, pixels scaled to [0, 1] and flattened to `[n, rows * cols]`.
///
/// ```no_run
/// let mnist = gradus::Mnist::load_default()?;
/// assert_eq!((mnist.train.len(), mnist.test.len()), (60_000, 10_000));
/// assert_eq!(mnist.train.inputs().shape(), &[60_000, 784]);
/// # Ok::<(), gradus::DataError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Mnist {
    /// 60,000 samples for MNIST.
    pub train: Dataset<f32>,
    /// 10,000 samples for MNIST.
    pub test: Dataset<f32>,
    /// `(rows, cols)` of an image.
    pub image_size: (usize, usize),
    /// What the checksums say the files are.
    pub provenance: Provenance,
}

/// Loading MNIST and Fashion-MNIST.
///
/// ```no_run
/// let mnist = gradus::Mnist::load("/usr/share/datasets/fashion-mnist")?;
/// assert_eq!(mnist.image_size, (28, 28));
/// # Ok::<(), gradus::DataError>(())
/// ```
impl Mnist {
    /// Loads the four files from `dir`, checking each file's structure, that images and
    /// labels agree in count, that labels are digits 0-9, and the checksums it knows.
    ///
    /// ```no_run
    /// let mnist = gradus::data::mnist::Mnist::load("data/mnist").unwrap();
    /// assert_eq!(mnist.train.len(), 60_000);
    /// ```
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        Self::load_with_limit(dir, MAX_DECODED_BYTES)
    }

    /// Where [`Mnist::load_default`] looks: the directory named by the `MNIST_DIR`
    /// environment variable when it is set; otherwise `data/mnist` under the current
    /// directory if it exists, else the `data/mnist` of the gradus repository this crate was
    /// built from (there for a path or git dependency; if it is not, the error of
    /// [`Mnist::load`] names it).
    ///
    /// ```
    /// let dir = gradus::Mnist::default_dir();
    /// assert!(!dir.as_os_str().is_empty());
    /// ```
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("MNIST_DIR") {
            return PathBuf::from(dir);
        }
        let here = PathBuf::from("data/mnist");
        if here.is_dir() {
            return here;
        }
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
    }

    /// [`Mnist::load`] from [`Mnist::default_dir`]: what a program that should run from any
    /// directory calls.
    ///
    /// ```no_run
    /// let mnist = gradus::Mnist::load_default()?;
    /// assert_eq!(mnist.test.len(), 10_000);
    /// # Ok::<(), gradus::DataError>(())
    /// ```
    pub fn load_default() -> Result<Self, DataError> {
        Self::load(Self::default_dir())
    }

    /// [`Mnist::load`] with another limit on each file's decoded size, in bytes (the default
    /// [`MAX_DECODED_BYTES`], 256 MiB, is about 5x MNIST's largest file).
    ///
    /// ```no_run
    /// // MNIST's largest file decodes to 47 MB: a 10 MB limit refuses it, naming the file.
    /// let err = gradus::Mnist::load_with_limit(gradus::Mnist::default_dir(), 10 << 20).unwrap_err();
    /// assert!(err.to_string().contains("train-images-idx3-ubyte"));
    /// ```
    pub fn load_with_limit(dir: impl AsRef<Path>, max_decoded: u64) -> Result<Self, DataError> {
        let dir = dir.as_ref();
        let mut paths = Vec::new();
        for name in FILES {
            match with_optional_gz(dir, name) {
                Some(p) => paths.push(p),
                None => {
                    return Err(DataError::Missing {
                        path: dir.join(format!("{name}[.gz]")),
                        hint: format!(
                            "Looked in {} for {name} or {name}.gz. Mnist::load needs a directory \
                             holding the four IDX files: the gradus repository ships them in \
                             data/mnist/ (Fashion-MNIST: apt-get install dataset-fashion-mnist, then \
                             /usr/share/datasets/fashion-mnist).",
                            dir.display()
                        ),
                    });
                }
            }
        }
        let mut unknown = Vec::new();
        let (mut is_mnist, mut is_fashion) = (true, true);
        let mut sets = Vec::new();
        for pair in 0..2 {
            let (ip, lp) = (&paths[2 * pair], &paths[2 * pair + 1]);
            let (dims, pixels) = read_u8(ip, 3, max_decoded)?;
            let (ldims, labels) = read_u8(lp, 1, max_decoded)?;
            for (i, (path, bytes)) in [(ip, &pixels), (lp, &labels)].into_iter().enumerate() {
                let digest = checksum(&dims, &ldims, i, bytes);
                let k = 2 * pair + i;
                is_mnist &= digest == MNIST_SHA256[k];
                is_fashion &= digest == FASHION_SHA256[k];
                if digest != MNIST_SHA256[k] && digest != FASHION_SHA256[k] {
                    unknown.push(format!(
                        "{}: sha256 {digest} is not that of MNIST or Fashion-MNIST",
                        path.display()
                    ));
                }
            }
            if dims[0] != ldims[0] {
                return Err(mismatch(
                    ip,
                    lp,
                    format!("{} images but {} labels", dims[0], ldims[0]),
                ));
            }
            if let Some((i, &l)) = labels.iter().enumerate().find(|(_, l)| **l > 9) {
                return Err(DataError::Format {
                    path: lp.clone(),
                    problem: format!("label {i} is {l}, expected a digit 0-9"),
                });
            }
            let features = dims[1]
                .checked_mul(dims[2])
                .filter(|&f| f <= MAX_IMAGE_PIXELS);
            let Some(features) = features else {
                return Err(DataError::Format {
                    path: ip.clone(),
                    problem: format!(
                        "images of {}x{} pixels; at most {MAX_IMAGE_PIXELS} pixels an image are read",
                        dims[1], dims[2]
                    ),
                });
            };
            let x = ArrayD::from_shape_vec(
                vec![dims[0], features],
                pixels.iter().map(|&p| p as f32 / 255.0).collect(),
            )
            .map_err(|e| DataError::Format {
                path: ip.clone(),
                problem: format!("{} images of {features} pixels: {e}", dims[0]),
            })?;
            sets.push((
                Dataset::classification(x, labels.iter().map(|&l| l as usize).collect())?,
                (dims[1], dims[2]),
            ));
        }
        let (test, test_size) = sets.pop().expect("two sets");
        let (train, train_size) = sets.pop().expect("two sets");
        if train_size != test_size {
            return Err(mismatch(
                &paths[0],
                &paths[2],
                format!("image sizes {train_size:?} and {test_size:?} differ"),
            ));
        }
        let provenance = if is_mnist {
            Provenance::Mnist
        } else if is_fashion {
            Provenance::FashionMnist
        } else {
            Provenance::Unknown(unknown)
        };
        Ok(Self {
            train,
            test,
            image_size: train_size,
            provenance,
        })
    }
}

fn mismatch(a: &Path, b: &Path, problem: String) -> DataError {
    DataError::Mismatch {
        first: PathBuf::from(a),
        second: PathBuf::from(b),
        problem,
    }
}

/// SHA-256 of the file's uncompressed bytes, rebuilt from header and body.
fn checksum(image_dims: &[usize], label_dims: &[usize], which: usize, body: &[u8]) -> String {
    let dims = if which == 0 { image_dims } else { label_dims };
    let mut h = Sha256::new();
    h.update([0, 0, 8, dims.len() as u8]);
    for &d in dims {
        h.update((d as u32).to_be_bytes());
    }
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
