//! The convolution lowered to matrix products: im2col plus one GEMM per group and block of
//! samples (a block's columns stay in cache); the backward builds each block's columns again
//! (memory traffic, not arithmetic, is what keeping them would cost) and makes two more GEMMs
//! (the weight's gradient against the columns, accumulated over the blocks, and the columns'
//! gradient, which col2im adds back into the input's).

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut2, IxDyn};

use super::Geometry;
use super::columns::{
    DOT_KERNEL, Rows, block_samples, col2im, im2col, scratch_vec, weight_grad_dots,
};
use crate::gemm::gemm;
use crate::{Float, pool};

/// The shapes every step uses: output channels per group, positions per sample, rows of a
/// column (`c / groups x kh x kw`), samples per block, and whether each sample gets a GEMM
/// of its own.
struct Plan {
    cg: usize,
    og: usize,
    p: usize,
    k: usize,
    bs: usize,
    per_sample: bool,
}

impl Plan {
    fn new(g: &Geometry, o: usize, groups: usize) -> Self {
        let (cg, og, p) = (g.c / groups, o / groups, g.positions());
        let k = cg * g.kh * g.kw;
        Plan {
            cg,
            og,
            p,
            k,
            bs: block_samples(k, p, g.n),
            // With a kernel smaller than a plane (a first layer: 1 channel, 3x3), one GEMM
            // per sample writes straight into the output, whose `[o, P]` rows of a sample
            // are contiguous; repacking the small weight each time costs less than moving
            // the output. Otherwise one GEMM per block, then a copy into place.
            per_sample: k < p,
        }
    }
}

/// The forward: `[n, o, oh, ow]` from the input `[n, c, h, w]`, the weight
/// `[o, c / groups, kh, kw]` and an optional bias `[o]`, all contiguous.
pub(super) fn forward<T: Float>(
    xs: &[T],
    ws: &[T],
    bias_s: Option<&[T]>,
    g: &Geometry,
    o: usize,
    groups: usize,
) -> ArrayD<T> {
    let Plan {
        cg,
        og,
        p,
        k,
        bs,
        per_sample,
    } = Plan::new(g, o, groups);
    let mut out = pool::scratch::<T>(&[g.n, o, g.oh, g.ow]);
    let out_s = out.as_slice_mut().expect("pooled storage is contiguous");
    let mut cols = scratch_vec::<T>(k * bs * p);
    let mut y = scratch_vec::<T>(if per_sample { 0 } else { og * bs * p });
    for s0 in (0..g.n).step_by(bs) {
        let samples = s0..(s0 + bs).min(g.n);
        let width = samples.len() * p;
        for gi in 0..groups {
            let cols = &mut cols[..k * width];
            im2col(xs, g, gi * cg..(gi + 1) * cg, samples.clone(), cols);
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
                    gemm(T::one(), &wg, &cj, T::zero(), &mut yj);
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
                let mut yv = ArrayViewMut2::from_shape((og, width), &mut *y).expect("sized");
                gemm(T::one(), &wg, &cols, T::zero(), &mut yv);
                rows.scatter(y, out_s, bias_s);
            }
        }
    }
    pool::recycle_vec(cols);
    pool::recycle_vec(y);
    out
}

/// The backward: the input's gradient `[n, c, h, w]` and the weight's (each only where
/// `needs` asks) from the output's gradient `gs`, all contiguous.
pub(super) fn backward<T: Float>(
    gs: &[T],
    xs: &[T],
    ws: &[T],
    g: &Geometry,
    o: usize,
    groups: usize,
    needs: &[bool],
) -> (Option<ArrayD<T>>, Option<ArrayD<T>>) {
    let Plan {
        cg,
        og,
        p,
        k,
        bs,
        per_sample,
    } = Plan::new(g, o, groups);
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
                im2col(xs, g, channels.clone(), samples.clone(), cols);
            }
            let cols = ArrayView2::from_shape((k, cw), &cols[..k * cw]).expect("sized");
            let wg = ArrayView2::from_shape((og, k), &ws[gi * og * k..][..og * k])
                .expect("sizes checked");
            let mut dv = ArrayViewMut2::from_shape((k, dxw), &mut dcols[..k * dxw]).expect("sized");
            let og_rows = ndarray::s![gi * og..(gi + 1) * og, ..];
            if per_sample {
                // The output gradient's rows of one sample are contiguous: no copy.
                for j in 0..samples.len() {
                    let gyj = rows.sample(gs, j);
                    if let Some(dw) = &mut dw {
                        let dwg = dw.slice_mut(og_rows);
                        if k <= DOT_KERNEL {
                            let gyj = gyj.as_slice().expect("contiguous rows");
                            let cj = &cols.as_slice().expect("contiguous")[j * p..];
                            weight_grad_dots(gyj, cj, cw, (k, p), dwg);
                        } else {
                            let cj = cols.slice(ndarray::s![.., j * p..(j + 1) * p]);
                            let mut dwg = dwg;
                            gemm(T::one(), &gyj, &cj.t(), T::one(), &mut dwg);
                        }
                    }
                    if needs[0] {
                        let mut dj = dv.slice_mut(ndarray::s![.., j * p..(j + 1) * p]);
                        gemm(T::one(), &wg.t(), &gyj, T::zero(), &mut dj);
                    }
                }
            } else {
                let gy = &mut gy[..og * width];
                rows.gather(gs, gy);
                let gyv = ArrayView2::from_shape((og, width), &*gy).expect("sized");
                if let Some(dw) = &mut dw {
                    // dW^T += cols gy^T: `gemm` transposes both operands
                    // into the layouts packed fastest.
                    let mut dwg = dw.slice_mut(og_rows);
                    let mut dwt = dwg.view_mut().reversed_axes();
                    gemm(T::one(), &cols, &gyv.t(), T::one(), &mut dwt);
                }
                if needs[0] {
                    gemm(T::one(), &wg.t(), &gyv, T::zero(), &mut dv);
                }
            }
            if let Some(dx) = &mut dx {
                let dxs = dx.as_slice_mut().expect("pooled storage is contiguous");
                col2im(&dcols[..k * width], dxs, g, channels, samples.clone());
            }
        }
    }
    for v in [gy, cols, dcols] {
        pool::recycle_vec(v);
    }
    (
        dx,
        dw.map(|d| {
            d.into_shape_with_order(IxDyn(&[o, cg, g.kh, g.kw]))
                .expect("same size")
        }),
    )
}
