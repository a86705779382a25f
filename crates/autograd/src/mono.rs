//! Generic code is compiled, and optimised, by the crate that instantiates it. A user's crate
//! in the dev profile (opt-level 0) calling `Trainer::fit::<f32>` would otherwise compile
//! gradus's per-element loops itself, unoptimised: about 10x slower than the same loops
//! compiled in gradus at the `[profile.dev.package."*"] opt-level = 3` that the README
//! advises. So the hot paths pass through `f32` and `f64` functions that are not generic, and
//! therefore are compiled inside gradus: [`monomorphic!`](crate::monomorphic) routes a generic
//! call to them.

use std::any::TypeId;
use std::mem::ManuallyDrop;

/// `x` seen as a `Y` when `T` and `U` are one type; `x` back otherwise.
///
/// # Safety
///
/// `Y` must be `X` with `T` replaced by `U`, so that `X` and `Y` are one type whenever `T`
/// and `U` are.
///
/// ```
/// use gradus_autograd::mono::cast;
/// fn first<T: 'static + Copy>(x: &[T]) -> Option<f32> {
///     // SAFETY: `&[f32]` is `&[T]` with T replaced by f32.
///     unsafe { cast::<T, f32, &[T], &[f32]>(x) }.ok().map(|s| s[0])
/// }
/// assert_eq!(first(&[2.5f32]), Some(2.5));
/// assert_eq!(first(&[2.5f64]), None);
/// ```
#[inline(always)]
pub unsafe fn cast<T: 'static, U: 'static, X, Y>(x: X) -> Result<Y, X> {
    if TypeId::of::<T>() == TypeId::of::<U>() {
        assert_eq!(
            size_of::<X>(),
            size_of::<Y>(),
            "mono::cast between unequal types"
        );
        let x = ManuallyDrop::new(x);
        // SAFETY: X and Y are one type (the caller's contract, T and U being one type).
        Ok(unsafe { std::mem::transmute_copy::<X, Y>(&x) })
    } else {
        Err(x)
    }
}

/// Calls `$f32(args)` when `$T` is `f32` and `$f64(args)` when it is `f64`, returning from
/// the enclosing function with the result; with any other `$T` it falls through, leaving the
/// arguments as they were. `$f32` and `$f64` must be the enclosing generic function's body
/// at `f32` and `f64`, written as functions that are not generic (so this crate compiles
/// them), taking the arguments in the order given and returning the enclosing function's
/// return type at that float type.
///
/// ```
/// use gradus_autograd::{Float, monomorphic};
///
/// fn sum_of_squares<T: Float>(x: &[T]) -> T {
///     monomorphic!(T; f32 => sum_f32, f64 => sum_f64; x);
///     generic(x)
/// }
/// fn generic<T: Float>(x: &[T]) -> T {
///     x.iter().fold(T::zero(), |a, &v| a + v * v)
/// }
/// #[inline(never)]
/// fn sum_f32(x: &[f32]) -> f32 { generic(x) }
/// #[inline(never)]
/// fn sum_f64(x: &[f64]) -> f64 { generic(x) }
///
/// assert_eq!(sum_of_squares(&[1.0f32, 2.0]), 5.0);
/// assert_eq!(sum_of_squares(&[3.0f64]), 9.0);
/// ```
#[macro_export]
macro_rules! monomorphic {
    ($T:ty; f32 => $f32:expr, f64 => $f64:expr; $($arg:ident),* $(,)?) => {
        // SAFETY: `$f32` and `$f64` take the arguments' types and return the enclosing
        // function's type with `$T` replaced by their float type (this macro's contract).
        let ($($arg,)*) = match unsafe { $crate::mono::cast::<$T, f32, _, _>(($($arg,)*)) } {
            Ok(($($arg,)*)) => {
                #[allow(clippy::unit_arg)]
                let out = $f32($($arg),*);
                return match unsafe { $crate::mono::cast::<f32, $T, _, _>(out) } {
                    Ok(out) => out,
                    Err(_) => unreachable!(),
                };
            }
            Err(args) => args,
        };
        #[allow(unused_variables)]
        let ($($arg,)*) = match unsafe { $crate::mono::cast::<$T, f64, _, _>(($($arg,)*)) } {
            Ok(($($arg,)*)) => {
                #[allow(clippy::unit_arg)]
                let out = $f64($($arg),*);
                return match unsafe { $crate::mono::cast::<f64, $T, _, _>(out) } {
                    Ok(out) => out,
                    Err(_) => unreachable!(),
                };
            }
            Err(args) => args,
        };
    };
}
