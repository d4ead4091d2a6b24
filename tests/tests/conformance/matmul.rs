//! Batched strided matmul: transposes read through strides, `[B, N, K] @ wᵀ` (merged rows
//! and batched), broadcast batch dims, odd sizes.

use beit_conformance::{conformance, op_cases, reference as r, Gen, Input, OpCase, Tol};

/// `a @ b` against the reference.
fn matmul(a: Input, b: Input) -> OpCase {
    OpCase::new(vec![a, b], |x| x[0].matmul(&x[1]), |x| r::matmul(&x[0], &x[1]))
}

/// `x @ wᵀ` for a Linear weight `w [n, k]`.
fn linear(x: Input, w: Input) -> OpCase {
    OpCase::new(vec![x, w], |x| x[0].matmul(&x[1].t()?), |x| r::matmul(&x[0], &x[1].transpose(0, 1)))
}

op_cases! {
    /// `[7, 5] @ [5, 3]`.
    plain => {
        let mut g = Gen::new(1);
        matmul(g.normal(&[7, 5], 1.0).into(), g.normal(&[5, 3], 1.0).into())
    };
    /// m = 197 rows, n = 1 column.
    rows_197 => {
        let mut g = Gen::new(2);
        matmul(g.normal(&[197, 4], 1.0).into(), g.normal(&[4, 1], 1.0).into())
    };
    /// Inner dim 1: an outer product `[7, 1] @ [1, 197]`.
    inner_1 => {
        let mut g = Gen::new(10);
        matmul(g.normal(&[7, 1], 1.0).into(), g.normal(&[1, 197], 1.0).into())
    };
    /// Batched `[2, 7, 5] @ [2, 5, 3]`.
    batched => {
        let mut g = Gen::new(3);
        matmul(g.normal(&[2, 7, 5], 1.0).into(), g.normal(&[2, 5, 3], 1.0).into())
    };
    /// Batched, both operands stored transposed (read through their strides), the lhs also
    /// a narrowed view.
    transposed => {
        let mut g = Gen::new(4);
        let a = Input::new(g.normal(&[2, 7, 5], 1.0)).transposed().padded();
        matmul(a, Input::new(g.normal(&[2, 5, 3], 1.0)).transposed())
    };
    /// A Linear layer `[B, N, K] @ wᵀ` whose rows merge into one GEMM.
    linear_weight => {
        let mut g = Gen::new(5);
        linear(g.normal(&[2, 7, 5], 1.0).into(), g.normal(&[3, 5], 1.0).into())
    };
    /// `[B, N, K] @ wᵀ` with a permuted `x` whose rows do not merge (batched path).
    linear_weight_strided => {
        let mut g = Gen::new(6);
        linear(Input::new(g.normal(&[2, 7, 5], 1.0)).permuted(&[1, 0, 2]), g.normal(&[3, 5], 1.0).into())
    };
    /// Broadcast batch: `[2, 1, 3, 4] @ [3, 4, 5]`.
    broadcast_batch => {
        let mut g = Gen::new(7);
        matmul(g.normal(&[2, 1, 3, 4], 1.0).into(), g.normal(&[3, 4, 5], 1.0).into())
    };
    /// A 2-D lhs against a batched rhs: `[7, 4] @ [2, 4, 3]`.
    broadcast_lhs => {
        let mut g = Gen::new(8);
        matmul(g.normal(&[7, 4], 1.0).into(), g.normal(&[2, 4, 3], 1.0).into())
    };
}

conformance! {
    /// Forward only (too large for finite differences): BEiT's width, K = 768, m = 197;
    /// f32 within 1e-4 of the output scale.
    fn large_k(dev: &Device) -> Result<()> {
        let mut g = Gen::new(9);
        let a = Input::new(g.normal(&[197, 768], 1.0)).padded();
        let b = Input::new(g.normal(&[768, 9], 1.0)).transposed();
        matmul(a, b).tol(Tol { f32: 1e-4, ..Tol::DEFAULT }).check_forward(dev)
    }
}
