//! Assertions shared by the cases: closeness to a reference, and errors that name their
//! culprit.

use crate::Array;
use beit_engine::Result;

/// The smallest scale of a comparison: an all-zero reference does not demand exact zeros.
pub const SCALE_FLOOR: f64 = 1e-3;

/// Asserts `got` has `want`'s shape and `max |got − want| <= tol · scale`, where `scale` is
/// the largest reference magnitude (at least [`SCALE_FLOOR`]): a normwise relative error.
/// A NaN in `want` must be a NaN in `got`. The message names `what` and the worst element.
pub fn assert_close(what: &str, got: &Array, want: &Array, tol: f64) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    let scale = want.data.iter().filter(|x| x.is_finite()).fold(SCALE_FLOOR, |m, x| m.max(x.abs()));
    let (mut worst, mut worst_err) = (0, 0.0);
    for (i, (&g, &w)) in got.data.iter().zip(&want.data).enumerate() {
        let err = match (g - w).abs() {
            _ if w.is_nan() && g.is_nan() => 0.0,
            e if e.is_nan() => f64::INFINITY,
            e => e,
        };
        if err > worst_err {
            (worst, worst_err) = (i, err);
        }
    }
    assert!(
        worst_err <= tol * scale,
        "{what}: element {worst} of {:?} is {} but the reference is {} (error {worst_err:.3e} > {tol:.1e} x scale {scale:.3e})",
        want.shape,
        got.data[worst],
        want.data[worst],
    );
}

/// Asserts `result` is an error whose message contains every one of `needles`; returns the
/// message.
pub fn assert_err<T>(result: Result<T>, needles: &[&str]) -> String {
    let msg = match result {
        Ok(_) => panic!("expected an error naming {needles:?}, got Ok({})", std::any::type_name::<T>()),
        Err(e) => e.to_string(),
    };
    for needle in needles {
        assert!(msg.contains(needle), "error `{msg}` does not name `{needle}`");
    }
    msg
}
