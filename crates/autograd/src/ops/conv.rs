//! Convolution over NCHW images with PyTorch's functional name and argument meanings:
//! `conv2d` (stride, padding, dilation, groups); pooling is in `pooling.rs`.
//!
//! `conv2d` is im2col plus one GEMM per group and block of samples (a block's columns stay in
//! cache); its backward builds each block's columns again and makes two more GEMMs (the
//! weight's gradient against the columns, accumulated over the blocks, and the columns'
//! gradient, which col2im adds back into the input's).

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut2, IxDyn};
use smallvec::{SmallVec, smallvec};

use crate::{Float, Var, pool};

/// A size given as one number for both axes or as `(height, width)`, as PyTorch accepts.
///
/// ```
/// use gradus_autograd::ops::conv::Pair;
/// assert_eq!(Pair::from(3), Pair(3, 3));
/// assert_eq!(Pair::from((2, 1)), Pair(2, 1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair(pub usize, pub usize);

impl From<usize> for Pair {
    fn from(v: usize) -> Self {
        Pair(v, v)
    }
}

impl From<(usize, usize)> for Pair {
    fn from((h, w): (usize, usize)) -> Self {
        Pair(h, w)
    }
}

/// How many windows of `kernel` elements spread by `dilation`, stepping by `stride`, fit along
/// an axis of `len` elements padded by `padding` on each side (PyTorch's output size):
/// `Some(0)` when none fits, `None` when the padded axis or the window's span passes
/// `usize`. Every window op, and the layers' shape inference, size their outputs with it.
///
/// ```
/// use gradus_autograd::ops::conv::window_output_len;
/// assert_eq!(window_output_len(28, 3, 1, 1, 1), Some(28)); // "same" padding
/// assert_eq!(window_output_len(28, 3, 2, 0, 2), Some(12));
/// assert_eq!(window_output_len(2, 5, 1, 0, 1), Some(0));
/// assert_eq!(window_output_len(28, 3, 1, usize::MAX / 2, 1), None);
/// ```
pub fn window_output_len(
    len: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<usize> {
    let padded = padding.checked_mul(2)?.checked_add(len)?;
    let span = dilation
        .checked_mul(kernel.saturating_sub(1))?
        .checked_add(1)?;
    Some(
        padded
            .checked_sub(span)
            .map_or(0, |v| v / stride.max(1) + 1),
    )
}

/// Where every window of a convolution or pooling lies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) stride: Pair,
    pub(crate) padding: Pair,
    pub(crate) dilation: Pair,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

impl Geometry {
    pub(crate) fn new(
        op: &str,
        input: &[usize],
        kernel: Pair,
        stride: Pair,
        padding: Pair,
        dilation: Pair,
    ) -> Self {
        assert!(
            input.len() == 4,
            "{op}: expected an NCHW input of 4 dimensions, got shape {input:?}"
        );
        let (n, c, h, w) = (input[0], input[1], input[2], input[3]);
        assert!(
            kernel.0 > 0
                && kernel.1 > 0
                && stride.0 > 0
                && stride.1 > 0
                && dilation.0 > 0
                && dilation.1 > 0,
            "{op}: kernel {kernel:?}, stride {stride:?} and dilation {dilation:?} must be at least 1"
        );
        // Checked: a huge padding or dilation must not wrap around into a plausible size.
        let oh = window_output_len(h, kernel.0, stride.0, padding.0, dilation.0);
        let ow = window_output_len(w, kernel.1, stride.1, padding.1, dilation.1);
        let Some((oh, ow)) = oh.zip(ow) else {
            panic!(
                "{op}: padding {padding:?} or dilation {dilation:?} overflows with input \
                 {input:?} and kernel {kernel:?}"
            )
        };
        assert!(
            oh > 0 && ow > 0,
            "{op}: input {input:?} padded by {padding:?} is smaller than the kernel {kernel:?} \
             (dilation {dilation:?})"
        );
        Geometry {
            n,
            c,
            h,
            w,
            kh: kernel.0,
            kw: kernel.1,
            stride,
            padding,
            dilation,
            oh,
            ow,
        }
    }

    /// The input row (or column) that output position `o` with kernel offset `k` reads, if
    /// it is not padding.
    #[inline]
    pub(crate) fn source(
        o: usize,
        k: usize,
        stride: usize,
        dilation: usize,
        pad: usize,
        len: usize,
    ) -> Option<usize> {
        (o * stride + k * dilation)
            .checked_sub(pad)
            .filter(|&i| i < len)
    }

    /// The output positions `o0..o1` (of `outs`) whose input index `o * stride + k * dilation
    /// - pad` lies inside `0..len`, and the input index of `o0`.
    #[inline]
    fn valid(
        outs: usize,
        k: usize,
        stride: usize,
        dilation: usize,
        pad: usize,
        len: usize,
    ) -> (usize, usize, usize) {
        let off = k * dilation;
        let o0 = pad.saturating_sub(off).div_ceil(stride);
        let o1 = (len + pad).saturating_sub(off).div_ceil(stride).min(outs);
        if o0 >= o1 {
            return (0, 0, 0);
        }
        (o0, o1, o0 * stride + off - pad)
    }

    pub(crate) fn positions(&self) -> usize {
        self.oh * self.ow
    }
}

/// About how many elements one block of im2col columns holds: with the matrix product's
/// output and the block's share of the input, a block stays in a core's L2 cache (1 MB
/// here), so the columns are packed for the GEMM from cache instead of from memory. W3's
/// second convolution keeps 3 samples per block, its first 21.
const BLOCK_ELEMENTS: usize = 1 << 17;

/// Up to this many kernel elements (`in / groups * kh * kw`) a sample's weight gradient is
/// computed as dot products ([`weight_grad_dots`]) rather than a GEMM.
const DOT_KERNEL: usize = 16;

/// The samples of one block of columns, for columns of `rows` rows and `p` positions per
/// sample.
fn block_samples(rows: usize, p: usize, n: usize) -> usize {
    (BLOCK_ELEMENTS / (rows * p).max(1)).clamp(1, n.max(1))
}

/// The columns of one group for `samples`, into `data` (`[rows, samples.len() * P]`): row
/// `(ci * kh + ki) * kw + kj`, column `j * P + oy * ow + ox` holds the input value that
/// kernel element `(ci, ki, kj)` meets at output `(oy, ox)` of sample `samples.start + j`
/// (0 in padding).
fn im2col<T: Float>(
    x: &[T],
    g: &Geometry,
    channels: std::ops::Range<usize>,
    samples: std::ops::Range<usize>,
    data: &mut [T],
) {
    let p = g.positions();
    let width = samples.len() * p;
    if g.padding != Pair(0, 0) {
        // Without padding every element is written below.
        data.fill(T::zero());
    }
    for (ci, c) in channels.enumerate() {
        for ki in 0..g.kh {
            let (y0, y1, iy0) =
                Geometry::valid(g.oh, ki, g.stride.0, g.dilation.0, g.padding.0, g.h);
            for kj in 0..g.kw {
                let (x0, x1, ix0) =
                    Geometry::valid(g.ow, kj, g.stride.1, g.dilation.1, g.padding.1, g.w);
                let row = ((ci * g.kh + ki) * g.kw + kj) * width;
                for (j, ni) in samples.clone().enumerate() {
                    let plane = &x[(ni * g.c + c) * g.h * g.w..][..g.h * g.w];
                    let out = &mut data[row + j * p..][..p];
                    for (oy, iy) in (y0..y1).zip((iy0..).step_by(g.stride.0)) {
                        let line = &plane[iy * g.w..][..g.w];
                        let dst = &mut out[oy * g.ow + x0..oy * g.ow + x1];
                        if g.stride.1 == 1 {
                            dst.copy_from_slice(&line[ix0..ix0 + (x1 - x0)]);
                        } else {
                            for (d, ix) in dst.iter_mut().zip((ix0..).step_by(g.stride.1)) {
                                *d = line[ix];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds columns laid out as [`im2col`] makes them for `samples` back into the input's
/// gradient.
fn col2im<T: Float>(
    data: &[T],
    dx: &mut [T],
    g: &Geometry,
    channels: std::ops::Range<usize>,
    samples: std::ops::Range<usize>,
) {
    let p = g.positions();
    let width = samples.len() * p;
    for (ci, c) in channels.enumerate() {
        for ki in 0..g.kh {
            let (y0, y1, iy0) =
                Geometry::valid(g.oh, ki, g.stride.0, g.dilation.0, g.padding.0, g.h);
            for kj in 0..g.kw {
                let (x0, x1, ix0) =
                    Geometry::valid(g.ow, kj, g.stride.1, g.dilation.1, g.padding.1, g.w);
                let row = ((ci * g.kh + ki) * g.kw + kj) * width;
                for (j, ni) in samples.clone().enumerate() {
                    let plane = &mut dx[(ni * g.c + c) * g.h * g.w..][..g.h * g.w];
                    let src = &data[row + j * p..][..p];
                    for (oy, iy) in (y0..y1).zip((iy0..).step_by(g.stride.0)) {
                        let line = &mut plane[iy * g.w..][..g.w];
                        let from = &src[oy * g.ow + x0..oy * g.ow + x1];
                        if g.stride.1 == 1 {
                            for (d, &s) in line[ix0..ix0 + (x1 - x0)].iter_mut().zip(from) {
                                *d += s;
                            }
                        } else {
                            for (&s, ix) in from.iter().zip((ix0..).step_by(g.stride.1)) {
                                line[ix] += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Pooled storage of `len` elements whose values are unspecified (about to be overwritten).
fn scratch_vec<T: Float>(len: usize) -> Vec<T> {
    let (v, _) = pool::scratch::<T>(&[len]).into_raw_vec_and_offset();
    v
}

/// Where one group's rows of an `[n, o, P]` array lie for a block of samples: `og` rows from
/// channel `og0`, samples from `s0`, against a block `[og, samples * P]`.
#[derive(Clone, Copy)]
struct Rows {
    o: usize,
    og0: usize,
    og: usize,
    s0: usize,
    samples: usize,
    p: usize,
}

impl Rows {
    /// Copies the block into the `[n, o, P]` array, adding each channel's bias (`[o]`, or
    /// none) on the way: no separate pass over the output.
    fn scatter<T: Float>(self, block: &[T], out: &mut [T], bias: Option<&[T]>) {
        let width = self.samples * self.p;
        for oi in 0..self.og {
            for j in 0..self.samples {
                let at = ((self.s0 + j) * self.o + self.og0 + oi) * self.p;
                let (dst, src) = (
                    &mut out[at..at + self.p],
                    &block[oi * width + j * self.p..][..self.p],
                );
                match bias {
                    Some(b) => add_scalar(dst, src, b[self.og0 + oi]),
                    None => dst.copy_from_slice(src),
                }
            }
        }
    }

    /// Sample `j`'s `[og, P]` rows of the `[n, o, P]` array (contiguous).
    fn sample<T: Float>(self, from: &[T], j: usize) -> ArrayView2<'_, T> {
        let at = ((self.s0 + j) * self.o + self.og0) * self.p;
        ArrayView2::from_shape((self.og, self.p), &from[at..at + self.og * self.p]).expect("sized")
    }

    /// The same rows, mutable.
    fn sample_mut<T: Float>(self, out: &mut [T], j: usize) -> ndarray::ArrayViewMut2<'_, T> {
        let at = ((self.s0 + j) * self.o + self.og0) * self.p;
        ArrayViewMut2::from_shape((self.og, self.p), &mut out[at..at + self.og * self.p])
            .expect("sized")
    }

    /// Copies the `[n, o, P]` array's rows into the block.
    fn gather<T: Float>(self, from: &[T], block: &mut [T]) {
        let width = self.samples * self.p;
        for oi in 0..self.og {
            for j in 0..self.samples {
                let at = ((self.s0 + j) * self.o + self.og0 + oi) * self.p;
                block[oi * width + j * self.p..][..self.p].copy_from_slice(&from[at..at + self.p]);
            }
        }
    }
}

/// `dst = src + b`, over slices passed separately (known not to overlap: vector code).
#[inline(always)]
fn add_scalar<T: Float>(dst: &mut [T], src: &[T], b: T) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s + b;
    }
}

/// `dw[og, k] += gy[og, p] cols[k, p]^T` as dot products, for a kernel of few elements (a
/// first layer's `k` = 9 against `P` = 676): as a GEMM both operands are packed across
/// their contiguous axis and `k` fills half a register tile (22 GFLOP/s measured). Rows
/// `t` of `cols` start at `t * stride`. Four rows of `cols` share each load of `gy`, in
/// 16 interleaved partial sums each (vector code without reassociating).
fn weight_grad_dots<T: Float>(
    gy: &[T],
    cols: &[T],
    stride: usize,
    kp: (usize, usize),
    dw: ArrayViewMut2<'_, T>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        /// The same loops compiled for AVX2 (8 floats a register instead of 4).
        #[target_feature(enable = "avx2")]
        fn avx2<T: Float>(
            gy: &[T],
            cols: &[T],
            stride: usize,
            kp: (usize, usize),
            dw: ArrayViewMut2<'_, T>,
        ) {
            weight_grad_dots_body(gy, cols, stride, kp, dw)
        }
        // SAFETY: the CPU has AVX2 (checked above).
        return unsafe { avx2(gy, cols, stride, kp, dw) };
    }
    weight_grad_dots_body(gy, cols, stride, kp, dw)
}

#[inline(always)]
fn weight_grad_dots_body<T: Float>(
    gy: &[T],
    cols: &[T],
    stride: usize,
    (k, p): (usize, usize),
    mut dw: ArrayViewMut2<'_, T>,
) {
    const LANES: usize = 16;
    const ROWS: usize = 4;
    let whole = p / LANES * LANES;
    for (oi, g) in gy.chunks_exact(p).enumerate() {
        for t0 in (0..k).step_by(ROWS) {
            let rows = ROWS.min(k - t0);
            // Missing rows (past `k`) read row `t0` again; their sums are dropped.
            let c: [&[T]; ROWS] =
                std::array::from_fn(|r| &cols[(t0 + r.min(rows - 1)) * stride..][..p]);
            let mut acc = [[T::zero(); LANES]; ROWS];
            for at in (0..whole).step_by(LANES) {
                let gv: &[T; LANES] = g[at..at + LANES].try_into().expect("LANES long");
                for (acc, c) in acc.iter_mut().zip(&c) {
                    let cv: &[T; LANES] = c[at..at + LANES].try_into().expect("LANES long");
                    for l in 0..LANES {
                        acc[l] += gv[l] * cv[l];
                    }
                }
            }
            for r in 0..rows {
                let tail = (whole..p).fold(T::zero(), |s, i| s + g[i] * c[r][i]);
                let sum = acc[r].iter().copied().fold(tail, |a, b| a + b);
                dw[[oi, t0 + r]] += sum;
            }
        }
    }
}

/// The sum of `v` in 16 interleaved partial sums, added at the end: vector code, where one
/// running sum is a chain of dependent additions.
fn lane_sum<T: Float>(v: &[T]) -> T {
    const LANES: usize = 16;
    let mut acc = [T::zero(); LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks
        .remainder()
        .iter()
        .copied()
        .fold(T::zero(), |a, b| a + b);
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().copied().fold(rest, |a, b| a + b)
}

pub(crate) fn contiguous<T: Float>(a: &ArrayD<T>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// 2-D convolution (cross-correlation, as PyTorch's `F.conv2d`) of an `[n, c, h, w]`
    /// input with a `[o, c / groups, kh, kw]` weight and an optional `[o]` bias; `stride`,
    /// `padding` and `dilation` are a number or `(height, width)`.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::ArrayD};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(ArrayD::ones(vec![2, 4, 9, 9]));
    /// let w = tape.constant(ArrayD::ones(vec![6, 2, 3, 3]));
    /// let y = x.conv2d(w, None, 2, (1, 0), 1, 2);
    /// assert_eq!(y.shape(), vec![2, 6, 5, 4]);
    /// ```
    pub fn conv2d(
        self,
        weight: Var<'t, T>,
        bias: Option<Var<'t, T>>,
        stride: impl Into<Pair>,
        padding: impl Into<Pair>,
        dilation: impl Into<Pair>,
        groups: usize,
    ) -> Var<'t, T> {
        let (x, w) = (self.value(), weight.value());
        assert!(
            w.ndim() == 4,
            "conv2d: expected a [out, in / groups, kh, kw] weight, got shape {:?}",
            w.shape()
        );
        let (o, cg) = (w.shape()[0], w.shape()[1]);
        let g = Geometry::new(
            "conv2d",
            x.shape(),
            Pair(w.shape()[2], w.shape()[3]),
            stride.into(),
            padding.into(),
            dilation.into(),
        );
        assert!(
            groups > 0 && g.c == cg * groups && o % groups == 0,
            "conv2d: input {:?} and weight {:?} do not fit {groups} group(s): the input's \
             channels must be groups x the weight's second axis, and its first axis a multiple \
             of groups",
            x.shape(),
            w.shape()
        );
        if let Some(b) = bias {
            let bv = b.value();
            assert!(
                bv.shape() == [o],
                "conv2d: bias of shape {:?} for {o} output channels",
                bv.shape()
            );
        }
        let (og, p, k) = (o / groups, g.positions(), cg * g.kh * g.kw);
        let xs = contiguous(&x);
        let ws = contiguous(&w);
        let bias_value = bias.map(|b| b.value());
        let bs_ = bias_value.as_ref().map(|b| contiguous(b));
        let bias_s = bs_.as_deref();
        let mut out = pool::scratch::<T>(&[g.n, o, g.oh, g.ow]);
        // im2col and one GEMM per block of samples and group; backward builds the columns
        // again rather than keeping them (memory traffic, not arithmetic, is what they cost).
        let bs = block_samples(k, p, g.n);
        // With a kernel smaller than a plane (a first layer: 1 channel, 3x3), one GEMM per
        // sample writes straight into the output, whose `[o, P]` rows of a sample are
        // contiguous; repacking the small weight each time costs less than moving the
        // output. Otherwise one GEMM per block, then a copy into place.
        let per_sample = k < p;
        {
            let out_s = out.as_slice_mut().expect("pooled storage is contiguous");
            let mut cols = scratch_vec::<T>(k * bs * p);
            let mut y = scratch_vec::<T>(if per_sample { 0 } else { og * bs * p });
            for s0 in (0..g.n).step_by(bs) {
                let samples = s0..(s0 + bs).min(g.n);
                let width = samples.len() * p;
                for gi in 0..groups {
                    let cols = &mut cols[..k * width];
                    im2col(&xs, &g, gi * cg..(gi + 1) * cg, samples.clone(), cols);
                    let wg = ArrayView2::from_shape((og, k), &ws[gi * og * k..][..og * k])
                        .expect("sizes checked");
                    let cols = ArrayView2::from_shape((k, width), &*cols).expect("sized above");
                    let rows = Rows {
                        o,
                        og0: gi * og,
                        og,
                        s0,
                        samples: samples.len(),
                        p,
                    };
                    if per_sample {
                        for j in 0..samples.len() {
                            let mut yj = rows.sample_mut(out_s, j);
                            let cj = cols.slice(ndarray::s![.., j * p..(j + 1) * p]);
                            general_mat_mul(T::one(), &wg, &cj, T::zero(), &mut yj);
                            if let Some(b) = bias_s {
                                // While the sample's rows are in cache.
                                let b = &b[gi * og..(gi + 1) * og];
                                for (mut row, &bv) in yj.rows_mut().into_iter().zip(b) {
                                    row.mapv_inplace(|v| v + bv);
                                }
                            }
                        }
                    } else {
                        let y = &mut y[..og * width];
                        let mut yv =
                            ArrayViewMut2::from_shape((og, width), &mut *y).expect("sized");
                        general_mat_mul(T::one(), &wg, &cols, T::zero(), &mut yv);
                        rows.scatter(y, out_s, bias_s);
                    }
                }
            }
            pool::recycle_vec(cols);
            pool::recycle_vec(y);
        }
        let operands: SmallVec<[Var<'t, T>; 3]> =
            std::iter::once(self).chain([weight]).chain(bias).collect();
        self.tape
            .push_op("conv2d", &operands, out, move |grad, _, inputs, needs| {
                let gs = contiguous(grad);
                let (x, w) = (inputs[0], inputs[1]);
                let xs = contiguous(x);
                let ws = contiguous(w);
                let mut dx = needs[0].then(|| pool::full::<T>(&[g.n, g.c, g.h, g.w], T::zero()));
                let mut dw = needs[1].then(|| {
                    let v = pool::full::<T>(&[o * k], T::zero())
                        .into_raw_vec_and_offset()
                        .0;
                    Array2::from_shape_vec((o, k), v).expect("sized")
                });
                let mut gy = scratch_vec::<T>(if per_sample { 0 } else { og * bs * p });
                let mut cols = scratch_vec::<T>(if needs[1] { k * bs * p } else { 0 });
                let mut dcols = scratch_vec::<T>(if needs[0] { k * bs * p } else { 0 });
                // Each group's weight transposed, `[k, og]`, once: packed from rows by every
                // block's product below.
                let mut wt = scratch_vec::<T>(if needs[0] && !per_sample { o * k } else { 0 });
                if !wt.is_empty() {
                    for gi in 0..groups {
                        let wg = &ws[gi * og * k..][..og * k];
                        let dst = &mut wt[gi * og * k..][..og * k];
                        for (oi, row) in wg.chunks_exact(k).enumerate() {
                            for (ki, &v) in row.iter().enumerate() {
                                dst[ki * og + oi] = v;
                            }
                        }
                    }
                }
                for s0 in (0..g.n).step_by(bs) {
                    let samples = s0..(s0 + bs).min(g.n);
                    let width = samples.len() * p;
                    for gi in 0..groups {
                        let rows = Rows {
                            o,
                            og0: gi * og,
                            og,
                            s0,
                            samples: samples.len(),
                            p,
                        };
                        let channels = gi * cg..(gi + 1) * cg;
                        // Widths of the blocks in use (0 for a gradient not asked for).
                        let (cw, dxw) = (
                            if needs[1] { width } else { 0 },
                            if needs[0] { width } else { 0 },
                        );
                        if needs[1] {
                            let cols = &mut cols[..k * width];
                            im2col(&xs, &g, channels.clone(), samples.clone(), cols);
                        }
                        let cols = ArrayView2::from_shape((k, cw), &cols[..k * cw]).expect("sized");
                        let wg = ArrayView2::from_shape((og, k), &ws[gi * og * k..][..og * k])
                            .expect("sizes checked");
                        let mut dv = ArrayViewMut2::from_shape((k, dxw), &mut dcols[..k * dxw])
                            .expect("sized");
                        let og_rows = ndarray::s![gi * og..(gi + 1) * og, ..];
                        if per_sample {
                            // The output gradient's rows of one sample are contiguous: no copy.
                            for j in 0..samples.len() {
                                let gyj = rows.sample(&gs, j);
                                if let Some(dw) = &mut dw {
                                    let dwg = dw.slice_mut(og_rows);
                                    if k <= DOT_KERNEL {
                                        let gyj = gyj.as_slice().expect("contiguous rows");
                                        let cj = &cols.as_slice().expect("contiguous")[j * p..];
                                        weight_grad_dots(gyj, cj, cw, (k, p), dwg);
                                    } else {
                                        let cj = cols.slice(ndarray::s![.., j * p..(j + 1) * p]);
                                        let mut dwg = dwg;
                                        general_mat_mul(
                                            T::one(),
                                            &gyj,
                                            &cj.t(),
                                            T::one(),
                                            &mut dwg,
                                        );
                                    }
                                }
                                if needs[0] {
                                    let mut dj = dv.slice_mut(ndarray::s![.., j * p..(j + 1) * p]);
                                    general_mat_mul(T::one(), &wg.t(), &gyj, T::zero(), &mut dj);
                                }
                            }
                        } else {
                            let gy = &mut gy[..og * width];
                            rows.gather(&gs, gy);
                            let gyv = ArrayView2::from_shape((og, width), &*gy).expect("sized");
                            if let Some(dw) = &mut dw {
                                // dW^T += cols gy^T: both operands are packed from rows
                                // (gy dW's way round would pack the larger cols by columns).
                                let mut dwg = dw.slice_mut(og_rows);
                                let mut dwt = dwg.view_mut().reversed_axes();
                                general_mat_mul(T::one(), &cols, &gyv.t(), T::one(), &mut dwt);
                            }
                            if needs[0] {
                                let wt =
                                    ArrayView2::from_shape((k, og), &wt[gi * og * k..][..og * k])
                                        .expect("sizes checked");
                                general_mat_mul(T::one(), &wt, &gyv, T::zero(), &mut dv);
                            }
                        }
                        if let Some(dx) = &mut dx {
                            let dxs = dx.as_slice_mut().expect("pooled storage is contiguous");
                            col2im(&dcols[..k * width], dxs, &g, channels, samples.clone());
                        }
                    }
                }
                for v in [gy, cols, dcols, wt] {
                    pool::recycle_vec(v);
                }
                let mut grads = smallvec![
                    dx,
                    dw.map(|d| d
                        .into_shape_with_order(IxDyn(w.shape()))
                        .expect("same size"))
                ];
                if needs.len() == 3 {
                    // The bias's gradient: the output gradient summed over samples and
                    // positions, per channel, into pooled storage.
                    grads.push(needs[2].then(|| {
                        let mut db = pool::full::<T>(&[o], T::zero());
                        let dbs = db.as_slice_mut().expect("pooled storage is contiguous");
                        for (i, plane) in gs.chunks_exact(p).enumerate() {
                            dbs[i % o] += lane_sum(plane);
                        }
                        db
                    }));
                }
                grads
            })
    }
}

#[cfg(test)]
mod tests {
    use crate::Var;
    use crate::ops::test_util::{check, sample};

    #[test]
    fn gradcheck_conv2d_with_stride_padding_dilation_groups_and_bias() {
        let x = sample(&[2, 4, 7, 6], 21);
        let w = sample(&[6, 2, 3, 2], 22);
        let b = sample(&[6], 23);
        check(
            |v: &[Var<'_, f64>]| {
                v[0].conv2d(v[1], Some(v[2]), (2, 1), (1, 2), (2, 1), 2)
                    .square()
                    .sum()
            },
            &[x.clone(), w.clone(), b],
        );
        let w1 = sample(&[3, 4, 3, 3], 24);
        check(
            |v: &[Var<'_, f64>]| v[0].conv2d(v[1], None, 1, 0, 1, 1).tanh().sum(),
            &[x, w1],
        );
    }

    /// The dot-product weight gradient of small kernels equals the plain triple loop, for
    /// row counts that do not fill its groups of four and positions that do not fill its
    /// 16 lanes.
    #[test]
    fn weight_gradient_dots_equal_the_plain_sum() {
        use ndarray::Array2;
        for (og, k, p) in [(1, 1, 1), (3, 5, 17), (2, 9, 676), (4, 16, 33), (5, 7, 15)] {
            let stride = p + 3; // rows of the columns are further apart than P
            let gy = sample(&[og * p], 51).into_raw_vec_and_offset().0;
            let cols = sample(&[k * stride], 52).into_raw_vec_and_offset().0;
            let start = sample(&[og, k], 53).into_shape_with_order((og, k)).unwrap();
            let mut got = start.clone();
            super::weight_grad_dots(&gy, &cols, stride, (k, p), got.view_mut());
            let want = Array2::from_shape_fn((og, k), |(o, t)| {
                start[[o, t]]
                    + (0..p)
                        .map(|i| gy[o * p + i] * cols[t * stride + i])
                        .sum::<f64>()
            });
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                    "{og}x{k}x{p}: {a} vs {b}"
                );
            }
        }
    }

    /// A batch large enough to be split into several blocks of im2col columns gives what
    /// each sample gives alone (one block), values and gradients: both the path of one GEMM
    /// per sample (kernel smaller than a plane) and that of one GEMM per block.
    #[test]
    fn a_batch_in_several_blocks_equals_its_samples_one_at_a_time() {
        use crate::{ParamStore, value_and_grad_with_aux};
        use ndarray::{ArrayD, Axis, IxDyn};
        /// `[n, c, h, w]`, `[o, c / groups, kh, kw]`, stride, padding, groups.
        type Case = (&'static [usize], &'static [usize], usize, usize, usize);
        let cases: [Case; 2] = [
            (&[13, 4, 30, 30], &[6, 2, 3, 3], 1, 0, 2), // k 18 < P 784, 9 samples a block
            (&[40, 32, 8, 8], &[8, 32, 3, 3], 2, 1, 1), // k 288 > P 16, 28 samples a block
        ];
        for (xs, ws, stride, padding, groups) in cases {
            let mut params = ParamStore::<f64>::new();
            let x = params.insert("x", sample(xs, 41)).unwrap();
            let w = params.insert("w", sample(ws, 42)).unwrap();
            let b = params.insert("b", sample(&[ws[0]], 43)).unwrap();
            let r = std::cell::RefCell::new(None::<ArrayD<f64>>);
            let run = |params: &ParamStore<f64>, x| {
                value_and_grad_with_aux(false, |tape| {
                    let y = tape.param(params, x).conv2d(
                        tape.param(params, w),
                        Some(tape.param(params, b)),
                        stride,
                        padding,
                        1,
                        groups,
                    );
                    let weights = r
                        .borrow_mut()
                        .get_or_insert_with(|| sample(&y.shape(), 44))
                        .clone();
                    let out = y.value().as_ref().clone();
                    ((y * tape.constant(weights)).sum(), out)
                })
                .unwrap()
            };
            let (_, whole, out) = run(&params, x);
            let full_r = r.borrow().clone().unwrap();
            let (mut dw, mut db) = (ArrayD::zeros(IxDyn(ws)), ArrayD::zeros(IxDyn(&[ws[0]])));
            for i in 0..xs[0] {
                let mut one = ParamStore::<f64>::new();
                let xi = params.get(x).index_axis(Axis(0), i).insert_axis(Axis(0));
                let xi = one.insert("x", xi.to_owned()).unwrap();
                one.insert("w", params.get(w).clone()).unwrap();
                one.insert("b", params.get(b).clone()).unwrap();
                *r.borrow_mut() = Some(
                    full_r
                        .index_axis(Axis(0), i)
                        .insert_axis(Axis(0))
                        .to_owned(),
                );
                let (_, g, o) = run(&one, xi);
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * (1.0 + b.abs());
                let want = out.index_axis(Axis(0), i);
                assert!(
                    o.iter().zip(want.iter()).all(|(&a, &b)| close(a, b)),
                    "{xs:?}: output of sample {i}"
                );
                let gx = whole.get(x).unwrap().index_axis(Axis(0), i);
                let gi = g.get(xi).unwrap().index_axis(Axis(0), 0);
                assert!(
                    gi.iter().zip(gx.iter()).all(|(&a, &b)| close(a, b)),
                    "{xs:?}: input gradient of sample {i}"
                );
                dw += g.get(one.id("w").unwrap()).unwrap();
                db += g.get(one.id("b").unwrap()).unwrap();
            }
            for (name, got, id) in [("weight", &dw, w), ("bias", &db, b)] {
                let want = whole.get(id).unwrap();
                assert!(
                    got.iter()
                        .zip(want.iter())
                        .all(|(&a, &b)| (a - b).abs() <= 1e-10 * (1.0 + b.abs())),
                    "{xs:?}: {name} gradient"
                );
            }
        }
    }
}
