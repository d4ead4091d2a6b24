//! beit-conformance: the backend conformance suite's machinery.
//!
//! Every case in `tests/conformance` is written once, as a function of a [`Device`], and the
//! [`conformance!`] macro emits one `#[test]` per backend compiled into this build
//! ([`backends`]). Differentiable ops are described by an [`OpCase`]: random inputs (possibly
//! non-contiguous views), the engine op, and an independent float64 reference written in
//! plain loops on the [`Array`] type: each op's own in a `mod r` of its case file, beside the
//! shared building blocks of [`mod@reference`]. [`op_cases!`] turns each into a
//! `forward` test (the backend's f32 and f64 output against the reference) and a `gradcheck`
//! test (analytic gradients against central finite differences, [`gradcheck`]).
#![warn(missing_docs)]

pub mod array;
pub mod backends;
pub mod case;
pub mod check;
pub mod erf;
pub mod gradcheck;
pub mod random;
pub mod reference;

pub use array::Array;
pub use backends::{cpu, float_dtypes, supports_bf16, supports_f64};
pub use beit_engine::{DType, Device, Error, Result, Tensor};
pub use case::{Input, OpCase, Tol};
pub use check::{assert_close, assert_err};
pub use random::Gen;

/// Emits, for each `fn name(dev: &Device) -> Result<()> { ... }`, a module `name` holding
/// one `#[test]` per backend this build has: `cpu` always, `composed` always (the CPU's
/// primitive kernels with every composed default, [`backends::PrimitivesOnly`]), `cuda`
/// with the `cuda` feature (skipped with a message when no GPU can be opened) or the
/// `cuda-sim` feature (on the simulated device, never skipped). An `Err` fails the test.
#[macro_export]
macro_rules! conformance {
    ($($(#[doc = $doc:literal])* fn $name:ident($dev:ident: &Device) -> Result<()> $body:block)*) => {$(
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn case($dev: &$crate::Device) -> $crate::Result<()> $body

            #[test]
            fn cpu() {
                $crate::backends::run_on_cpu(module_path!(), case);
            }

            #[test]
            fn composed() {
                $crate::backends::run_on_primitives(module_path!(), case);
            }

            #[cfg(any(feature = "cuda", feature = "cuda-sim"))]
            #[test]
            fn cuda() {
                $crate::backends::run_on_cuda(module_path!(), case);
            }
        }
    )*};
}

/// Emits, for each `name => op_case_expr;`, a module `name` with two [`conformance!`]
/// cases: `forward` ([`OpCase::check_forward`]) and `gradcheck` ([`OpCase::check_grad`]).
#[macro_export]
macro_rules! op_cases {
    ($($(#[doc = $doc:literal])* $name:ident => $spec:expr;)*) => {$(
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn spec() -> $crate::OpCase {
                $spec
            }

            $crate::conformance! {
                fn forward(dev: &Device) -> Result<()> {
                    spec().check_forward(dev)
                }
                fn gradcheck(dev: &Device) -> Result<()> {
                    spec().check_grad(dev)
                }
            }
        }
    )*};
}
