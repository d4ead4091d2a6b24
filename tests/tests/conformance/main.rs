//! The backend conformance suite. Every case runs once per backend this build has
//! (`<family>::<case>::cpu`, and `::cuda` with the `cuda` feature). A differentiable op's
//! case is a module with a `forward` test (f32 and f64 output against the float64
//! reference of `beit_conformance::reference`) and a `gradcheck` test (analytic gradients
//! against central differences), so `cargo test -- --list` shows one `gradcheck` per op.

mod autograd;
mod binary;
mod cast;
mod conv;
mod dense;
mod dropout;
mod errors;
mod fused;
mod index;
mod inference;
mod integer;
mod matmul;
mod optim;
mod reduce;
mod select;
mod unary;
mod view;
