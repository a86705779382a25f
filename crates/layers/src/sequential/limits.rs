//! Sizes a layer cannot have: refused when the model is built, naming the layer, instead of
//! an arithmetic overflow or an aborted allocation at the first forward.

use gradus_autograd::Float;
use gradus_autograd::ops::conv::{Pair, window_output_len};

use super::builder::Spec;

/// Why `spec`'s parameters, or one sample of its output (`per_sample`, where known), cannot
/// be held in memory; `None` when they can.
pub(super) fn too_large<T: Float>(spec: &Spec, per_sample: Option<&[usize]>) -> Option<String> {
    let bytes = |values: usize| values.checked_mul(size_of::<T>());
    if let Some(shape) = per_sample
        && values(shape)
            .and_then(bytes)
            .is_none_or(|b| b > isize::MAX as usize)
    {
        return Some(format!(
            "one sample's output {shape:?} has more values than memory can address"
        ));
    }
    let Some(values) = parameter_values(spec) else {
        return Some("its parameters have more values than memory can address".into());
    };
    // Reserving without touching the pages asks the allocator whether the weights can be
    // had at all: a request no machine can grant fails here with the layer's name rather
    // than aborting the process when the weights are drawn.
    if Vec::<T>::new().try_reserve_exact(values).is_err() {
        return Some(format!(
            "its {values} parameters ({} bytes) cannot be allocated",
            bytes(values).map_or_else(|| "too many".to_string(), |b| b.to_string())
        ));
    }
    None
}

/// How many values a layer's parameters and buffers hold, `None` past `usize`.
fn parameter_values(spec: &Spec) -> Option<usize> {
    match spec {
        Spec::Linear(c) => c
            .in_features
            .checked_mul(c.out_features)?
            .checked_add(if c.bias { c.out_features } else { 0 }),
        Spec::Conv2d(c) => c
            .out_channels
            .checked_mul(c.in_channels / c.groups.max(1))?
            .checked_mul(c.kernel_size.0)?
            .checked_mul(c.kernel_size.1)?
            .checked_add(if c.bias { c.out_channels } else { 0 }),
        // Weight, bias, running mean and variance, and the batch count.
        Spec::BatchNorm { channels, .. } => channels.checked_mul(4)?.checked_add(1),
        _ => Some(0),
    }
}

/// How many values a tensor of `shape` holds, `None` past `usize`.
pub(super) fn values(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Whether an `h x w` input padded by `padding`, or a `kernel` spread by `dilation`, spans
/// more than `usize` counts (the ops refuse such a window).
pub(super) fn window_overflows(
    kernel: Pair,
    padding: Pair,
    dilation: Pair,
    h: usize,
    w: usize,
) -> bool {
    window_output_len(h, kernel.0, 1, padding.0, dilation.0).is_none()
        || window_output_len(w, kernel.1, 1, padding.1, dilation.1).is_none()
}
