//! The GEMM against f64 loops, on every instruction set this CPU has.

use super::*;
use crate::erf;

/// Deterministic values in [-1, 1).
fn vals(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// The bit patterns of `v`, to compare results exactly.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `post(A·B)` with A `[m, k]` stored row-major (`a_t`: column-major), B `[k, n]`
/// stored row-major (`b_t`: column-major, as a transposed weight) against f64 loops.
fn check((m, k, n): (usize, usize, usize), (a_t, b_t): (bool, bool), (bias, gelu, res): (bool, bool, Option<bool>)) {
    for isa in isas() {
        check_on(isa, (m, k, n), (a_t, b_t), (bias, gelu, res));
    }
}

/// Every instruction set this CPU has, so that the AVX2 GEMM is tested on AVX-512 CPUs too.
fn isas() -> Vec<Isa> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx512 = has!("avx512f").then_some(Isa::Avx512);
        let avx2 = (has!("avx2") && has!("fma")).then_some(Isa::Avx2);
        avx512.into_iter().chain(avx2).collect()
    }
    #[cfg(not(target_arch = "x86_64"))]
    Vec::new()
}

/// [`check`] on one instruction set.
fn check_on(isa: Isa, (m, k, n): (usize, usize, usize), (a_t, b_t): (bool, bool), (bias, gelu, res): (bool, bool, Option<bool>)) {
    let (av, bv) = (vals(m * k, 1), vals(k * n, 2));
    let a = if a_t { Mat { ptr: av.as_ptr(), rs: 1, cs: m as isize } } else { Mat { ptr: av.as_ptr(), rs: k as isize, cs: 1 } };
    let b = if b_t { Mat { ptr: bv.as_ptr(), rs: 1, cs: k as isize } } else { Mat { ptr: bv.as_ptr(), rs: n as isize, cs: 1 } };
    // The residual has C's row stride.
    let ldc = n + 3;
    let (bias_v, scale_v, res_v) = (vals(n, 3), vals(n, 4), vals(m * ldc, 5));
    let post = Post {
        bias: if bias { bias_v.as_ptr() } else { std::ptr::null() },
        gelu,
        scale: if res == Some(true) { scale_v.as_ptr() } else { std::ptr::null() },
        residual: if res.is_some() { res_v.as_ptr() } else { std::ptr::null() },
        ..Post::NONE
    };
    let mut c = vec![f32::NAN; m * ldc];
    // SAFETY: the operands cover the shapes; C is separate.
    unsafe { sgemm_with(isa, m, k, n, a, &b, c.as_mut_ptr(), ldc, &post) };
    let at = |mat: &Mat, v: &[f32], r: usize, col: usize| v[(r as isize * mat.rs + col as isize * mat.cs) as usize] as f64;
    for i in 0..m {
        for j in 0..n {
            let mut want: f64 = (0..k).map(|p| at(&a, &av, i, p) * at(&b, &bv, p, j)).sum();
            if bias {
                want += bias_v[j] as f64;
            }
            if gelu {
                want = erf::gelu(want);
            }
            if let Some(scaled) = res {
                want = res_v[i * ldc + j] as f64 + if scaled { scale_v[j] as f64 } else { 1.0 } * want;
            }
            let got = c[i * ldc + j] as f64;
            let tol = 2e-6 * (k as f64).sqrt().max(1.0) * (1.0 + want.abs());
            assert!((got - want).abs() <= tol, "{isa:?} {m}x{k}x{n} a_t={a_t} b_t={b_t}: C[{i},{j}] = {got}, want {want}");
        }
        assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|x| x.is_nan()), "wrote past column {n} in row {i}");
    }
}

#[test]
fn products_match_f64_across_block_edges() {
    if !available() {
        eprintln!("gemm: this CPU has neither AVX-512F nor AVX2 + FMA; the kernels are not used here");
        return;
    }
    // Tiles of 1..14 rows and 1..32 columns, k not a multiple of 16, and shapes crossing
    // the block edges: A blocks of 144 (AVX2) and 896 rows (822 also ends an AVX2 A
    // block on a full tile at the end of the buffer), depth 256, B blocks of 384 and
    // 3072 (AVX2) columns.
    let shapes = [(1, 1, 1), (5, 17, 33), (14, 16, 32), (29, 300, 70), (197, 64, 97), (900, 20, 40), (15, 5, 800), (822, 260, 33), (3, 7, 3100)];
    for (m, k, n) in shapes {
        for (a_t, b_t) in [(false, false), (false, true), (true, false), (true, true)] {
            check((m, k, n), (a_t, b_t), (false, false, None));
        }
    }
}

#[test]
fn epilogues_match_f64() {
    if !available() {
        return;
    }
    // Rows of 5 columns, and of 32 + 8 and 32 + 29: the epilogue's pairs of vectors, single
    // vectors and elements.
    for (m, k, n) in [(3, 7, 5), (30, 270, 40), (7, 33, 61)] {
        check((m, k, n), (false, true), (true, false, None));
        check((m, k, n), (false, true), (true, true, None));
        check((m, k, n), (false, true), (true, false, Some(true)));
        check((m, k, n), (false, true), (false, false, Some(false)));
        check((m, k, n), (true, false), (true, true, Some(true)));
    }
    // k = 0: C is the epilogue of zeros.
    check((4, 0, 6), (false, false), (true, true, Some(true)));
}

/// The widening bf16 form: f32 `A [m, k]` times a bf16 weight `w [n, k]` (row stride k + 2)
/// widened as it is packed, on every instruction set, against f64 loops over the exact
/// operands: f32 tolerance, since widening is exact.
#[test]
fn widened_bf16_weights_match_f64() {
    use half::bf16;
    for isa in isas() {
        for (m, k, n) in [(3, 5, 7), (29, 300, 70), (14, 16, 800)] {
            let ld = k + 2;
            let av = vals(m * k, 21);
            let w: Vec<bf16> = vals(n * ld, 22).iter().map(|&x| bf16::from_f32(x)).collect();
            let a = Mat { ptr: av.as_ptr(), rs: k as isize, cs: 1 };
            let b = Bf16Weight { ptr: w.as_ptr(), ld };
            let mut c = vec![f32::NAN; m * n];
            // SAFETY: the operands cover the shapes; C is separate.
            unsafe { sgemm_with(isa, m, k, n, a, &b, c.as_mut_ptr(), n, &Post::NONE) };
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|p| av[i * k + p] as f64 * w[j * ld + p].to_f64()).sum();
                    let got = c[i * n + j] as f64;
                    let tol = 2e-6 * (k as f64).sqrt() * (1.0 + want.abs());
                    assert!((got - want).abs() <= tol, "{isa:?} widened {m}x{k}x{n}: C[{i},{j}] = {got}, want {want}");
                }
            }
        }
    }
}

/// A bf16 `A [m, k]` (a convolution's weight) widened a block at a time, on every
/// instruction set, against f64 loops over the exact operands: rows past one A block and
/// depths past one depth block, a padded row stride, and the offset of [`Rows::rows_from`].
#[test]
#[cfg(target_arch = "x86_64")]
fn widened_bf16_rows_match_f64() {
    use half::bf16;
    for isa in isas() {
        let mc = isa.blocking().mc;
        // k = 257 leaves a last depth block one deep (a 1 × 1-strided scratch).
        for (m, k, n) in [(3, 5, 7), (mc + 5, 300, 40), (14, 600, 33), (20, 257, 9)] {
            let (ld, skip) = (k + 3, 2);
            let w: Vec<bf16> = vals((m + skip) * ld, 23).iter().map(|&x| bf16::from_f32(x)).collect();
            let bv = vals(k * n, 24);
            let b = Mat { ptr: bv.as_ptr(), rs: n as isize, cs: 1 };
            let mut c = vec![f32::NAN; m * n];
            // SAFETY: the operands cover the shapes; C is separate.
            unsafe {
                let a = Bf16Rows { ptr: w.as_ptr(), ld }.rows_from(skip);
                sgemm_with(isa, m, k, n, a, &b, c.as_mut_ptr(), n, &Post::NONE)
            };
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|p| w[(i + skip) * ld + p].to_f64() * bv[p * n + j] as f64).sum();
                    let got = c[i * n + j] as f64;
                    let tol = 2e-6 * (k as f64).sqrt() * (1.0 + want.abs());
                    assert!((got - want).abs() <= tol, "{isa:?} bf16 rows {m}x{k}x{n}: C[{i},{j}] = {got}, want {want}");
                }
            }
        }
    }
}

/// The bf16 GEMM: f32 `A [m, k]` rounded to bf16 (to nearest even) times a bf16 weight
/// `w [n, k]`, against f64 loops over the rounded values, f32-accumulation tolerance.
#[test]
fn bf16_products_match_f64_of_rounded_operands() {
    use half::bf16;
    if !bf16_available() {
        eprintln!("gemm: this CPU has no AVX512_BF16; the bf16 kernel is not used here");
        return;
    }
    // 1..14-row tiles, pair counts off the 16-pair packing chunk, depth blocks of 256
    // pairs, B blocks of 384 columns, and every epilogue term.
    let shapes = [(1, 2, 1), (5, 34, 33), (14, 32, 32), (29, 600, 70), (197, 128, 97), (3, 10, 800), (900, 6, 40)];
    for (idx, (m, k, n)) in shapes.into_iter().enumerate() {
        let (av, wv) = (vals(m * k, 11), vals(n * k, 12));
        let w: Vec<bf16> = wv.iter().map(|&x| bf16::from_f32(x)).collect();
        let ldc = n + 3;
        let (bias_v, scale_v, res_v) = (vals(n, 13), vals(n, 14), vals(m * ldc, 15));
        let full = idx % 2 == 1;
        let post = Post {
            bias: if full { bias_v.as_ptr() } else { std::ptr::null() },
            gelu: full,
            scale: if full { scale_v.as_ptr() } else { std::ptr::null() },
            residual: if full { res_v.as_ptr() } else { std::ptr::null() },
            ..Post::NONE
        };
        let a = Mat { ptr: av.as_ptr(), rs: k as isize, cs: 1 };
        let b = Mat { ptr: w.as_ptr().cast(), rs: 1, cs: (k / 2) as isize };
        let mut c = vec![f32::NAN; m * ldc];
        // SAFETY: the operands cover the shapes; C is separate; a Vec<bf16> of this size
        // comes from the allocator 4-byte aligned (checked).
        assert_eq!(w.as_ptr() as usize % 4, 0);
        unsafe { bf16_gemm(m, k / 2, n, a, &b, c.as_mut_ptr(), ldc, &post) };
        for i in 0..m {
            for j in 0..n {
                let round = |x: f32| bf16::from_f32(x).to_f64();
                let mut want: f64 = (0..k).map(|p| round(av[i * k + p]) * w[j * k + p].to_f64()).sum();
                if full {
                    want = res_v[i * ldc + j] as f64 + scale_v[j] as f64 * erf::gelu(want + bias_v[j] as f64);
                }
                let got = c[i * ldc + j] as f64;
                let tol = 4e-6 * (k as f64).sqrt() * (1.0 + want.abs());
                assert!((got - want).abs() <= tol, "bf16 {m}x{k}x{n}: C[{i},{j}] = {got}, want {want}");
            }
            assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|x| x.is_nan()), "wrote past column {n} in row {i}");
        }
    }
}

/// The bf16 form is decided once and is a form this CPU can run.
#[test]
fn bf16_form_is_runnable_here() {
    let form = bf16_form();
    eprintln!("bf16 form on this CPU: {form:?}");
    assert_eq!(form.is_some(), available());
    assert!(form != Some(Bf16Gemm::Dot) || bf16_available());
    assert_eq!(bf16_form(), form, "decided once");
}

/// A B operand pre-packed once ([`prepack`], read in place through [`Prepacked`]) gives
/// exactly the product of packing it on every call (checked against f64 above), f32 on
/// every instruction set and bf16 pairs where the CPU has `vdpbf16ps`: depths across the
/// 256-deep blocks, rows across A blocks, columns across B blocks (384 and 3072) with a
/// ragged last panel, and a column offset as the threads take them.
#[test]
fn prepacked_b_matches_packing_per_call() {
    if !available() {
        return;
    }
    let post_of = |bias: &[f32]| Post { bias: bias.as_ptr(), gelu: true, ..Post::NONE };
    for (m, k, n) in [(5, 7, 33), (197, 300, 800), (900, 520, 70), (30, 64, 3100)] {
        let (av, bv, bias) = (vals(m * k, 21), vals(k * n, 22), vals(n, 23));
        let a = Mat { ptr: av.as_ptr(), rs: k as isize, cs: 1 };
        // A transposed weight `w [n, k]`, as a Linear layer's.
        let b = Mat { ptr: bv.as_ptr(), rs: 1, cs: k as isize };
        let mut packed = vec![f32::NAN; n.div_ceil(NR) * NR * k];
        // SAFETY (here and below): the operands cover the shapes; C is separate.
        unsafe { prepack(&b, k, n, &mut packed) };
        let pre = Prepacked { ptr: packed.as_ptr(), k };
        for c0 in [0, NR] {
            let cols = n.saturating_sub(c0);
            let post = post_of(&bias[c0.min(n)..]);
            for isa in isas() {
                let (mut plain, mut read) = (vec![0.0; m * cols], vec![0.0; m * cols]);
                unsafe {
                    sgemm_with(isa, m, k, cols, a, &b.from(0, c0), plain.as_mut_ptr(), cols, &post);
                    sgemm_with(isa, m, k, cols, a, &pre.cols_from(c0), read.as_mut_ptr(), cols, &post);
                }
                assert!(bits(&plain) == bits(&read), "{isa:?} {m}x{k}x{n} from column {c0}");
            }
            if bf16_available() && k.is_multiple_of(2) {
                let w: Vec<half::bf16> = bv.iter().map(|&x| half::bf16::from_f32(x)).collect();
                assert_eq!(w.as_ptr() as usize % 4, 0, "a Vec<bf16> of this size is 4-byte aligned");
                let pairs = Mat { ptr: w.as_ptr().cast(), rs: 1, cs: (k / 2) as isize };
                let mut packed = vec![f32::NAN; n.div_ceil(NR) * NR * k / 2];
                let (mut plain, mut read) = (vec![0.0; m * cols], vec![0.0; m * cols]);
                unsafe {
                    prepack(&pairs, k / 2, n, &mut packed);
                    let pre = Prepacked { ptr: packed.as_ptr(), k: k / 2 };
                    bf16_gemm(m, k / 2, cols, a, &pairs.from(0, c0), plain.as_mut_ptr(), cols, &post);
                    bf16_gemm(m, k / 2, cols, a, &pre.cols_from(c0), read.as_mut_ptr(), cols, &post);
                }
                assert!(bits(&plain) == bits(&read), "bf16 {m}x{k}x{n} from column {c0}");
            }
        }
    }
}

/// A packed whole ([`pack_rows`] read as [`PackedRows`]) gives the bits of the GEMM's own
/// block-by-block packing, on every instruction set: several A blocks and depth blocks,
/// a ragged last tile, row- and column-major A, and the rows from the second tile on.
#[test]
fn rows_packed_whole_give_the_same_bits() {
    for isa in isas() {
        let mr = isa.mr();
        for (m, k, n) in [(29, 300, 70), (905, 520, 33), (150, 40, 100)] {
            for a_t in [false, true] {
                let (av, bv) = (vals(m * k, 31), vals(k * n, 32));
                let a = if a_t { Mat { ptr: av.as_ptr(), rs: 1, cs: m as isize } } else { Mat { ptr: av.as_ptr(), rs: k as isize, cs: 1 } };
                let b = Mat { ptr: bv.as_ptr(), rs: n as isize, cs: 1 };
                let mut tiles = vec![f32::NAN; m.div_ceil(mr) * mr * k];
                let (mut want, mut got, mut tail) = (vec![0.0f32; m * n], vec![0.0f32; m * n], vec![0.0f32; (m - mr) * n]);
                // SAFETY: the operands cover the shapes; C is separate.
                unsafe {
                    sgemm_with(isa, m, k, n, a, &b, want.as_mut_ptr(), n, &Post::NONE);
                    pack_rows(isa, a, 0, m, k, &mut tiles);
                    let packed = PackedRows { ptr: tiles.as_ptr(), m, k, isa };
                    sgemm_with(isa, m, k, n, packed, &b, got.as_mut_ptr(), n, &Post::NONE);
                    sgemm_with(isa, m - mr, k, n, packed.rows_from(mr), &b, tail.as_mut_ptr(), n, &Post::NONE);
                }
                assert!(bits(&got) == bits(&want), "{isa:?} {m}x{k}x{n} a_t={a_t}: packed rows differ");
                assert!(bits(&tail) == bits(&want[mr * n..]), "{isa:?} {m}x{k}x{n} a_t={a_t}: packed rows from row {mr} differ");
            }
        }
    }
}

/// [`sgemm_threads`] on 3 threads, on every instruction set, cut by rows (B packed once:
/// f32, and bf16 widened as it is packed; or B pre-packed already) and by columns (A packed
/// once), with an epilogue, gives the bits of one thread's GEMM.
#[test]
fn products_on_threads_give_one_threads_bits() {
    use crate::blocks::{OutPtr, Shared, Split};
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    pool.install(|| {
        for isa in isas() {
            for ((m, k, n), shared) in [((600, 300, 200), Shared::B), ((100, 300, 700), Shared::A), ((97, 520, 3100), Shared::A)] {
                assert_eq!(Split::new(1, m, k, n, tile()).shared(), Some(shared), "{m}x{k}x{n} is not cut as the test needs");
                for a_t in [false, true] {
                    let (av, wv) = (vals(m * k, 41), vals(n * k, 42));
                    let a = if a_t { Mat { ptr: av.as_ptr(), rs: 1, cs: m as isize } } else { Mat { ptr: av.as_ptr(), rs: k as isize, cs: 1 } };
                    let (bias, scale, res) = (vals(n, 43), vals(n, 44), vals(m * n, 45));
                    let post = Post { bias: bias.as_ptr(), gelu: true, scale: scale.as_ptr(), residual: res.as_ptr(), ..Post::NONE };
                    // B = wᵀ of a weight `w [n, k]`: f32, pre-packed f32, and bf16.
                    let b = Mat { ptr: wv.as_ptr(), rs: 1, cs: k as isize };
                    let mut panels = vec![0.0f32; n.div_ceil(NR) * NR * k];
                    let w16: Vec<half::bf16> = wv.iter().map(|&x| half::bf16::from_f32(x)).collect();
                    let b16 = Bf16Weight { ptr: w16.as_ptr(), ld: k };
                    let out = || (vec![0.0f32; m * n], vec![0.0f32; m * n]);
                    let [(mut want, mut got), (mut want_pre, mut got_pre), (mut want16, mut got16)] = [out(), out(), out()];
                    // SAFETY: the operands cover the shapes; C is separate.
                    unsafe {
                        prepack(&b, k, n, &mut panels);
                        let pre = Prepacked { ptr: panels.as_ptr(), k };
                        sgemm_with(isa, m, k, n, a, &b, want.as_mut_ptr(), n, &post);
                        sgemm_threads_with(isa, m, k, n, a, &b, OutPtr(got.as_mut_ptr()), n, &post);
                        sgemm_with(isa, m, k, n, a, &pre, want_pre.as_mut_ptr(), n, &post);
                        sgemm_threads_with(isa, m, k, n, a, &pre, OutPtr(got_pre.as_mut_ptr()), n, &post);
                        sgemm_with(isa, m, k, n, a, &b16, want16.as_mut_ptr(), n, &post);
                        sgemm_threads_with(isa, m, k, n, a, &b16, OutPtr(got16.as_mut_ptr()), n, &post);
                    }
                    for (got, want, how) in [(&got, &want, "f32"), (&got_pre, &want_pre, "pre-packed"), (&got16, &want16, "bf16")] {
                        assert!(bits(got) == bits(want), "{isa:?} {m}x{k}x{n} a_t={a_t}, B {how}: threads differ from one thread");
                    }
                }
            }
        }
    });
}
