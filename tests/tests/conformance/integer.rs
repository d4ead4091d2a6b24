//! Integer and bool tensors, checked against Rust on the host: every dtype cast to every
//! dtype (Rust `as` semantics: integers wrap, floats truncate and saturate, NaN to 0; to
//! bool is `!= 0`; to bf16 as `half` converts: from f32 to nearest even, from integers
//! through f32), comparisons, `where`, gathers and scatter-adds, copies and reductions,
//! on strided inputs.

use beit_conformance::conformance;
use beit_engine::{CmpOp, DType, Device, HostData, Result, Tensor};
use half::bf16;

/// Values of every dtype, with negatives, wrap-arounds, fractions, NaN and infinities.
fn sources() -> Vec<HostData> {
    vec![
        HostData::I64(vec![-3, 0, 7, 1 << 40, -(1 << 33) - 5, 255, 256, i64::MIN]),
        HostData::U32(vec![0, 5, 65_536, 9, u32::MAX, 255, 256, 1 << 31]),
        HostData::U8(vec![0, 1, 200, 255, 7, 128, 127, 3]),
        HostData::Bool(vec![1, 0, 0, 1, 1, 1, 0, 1]),
        HostData::F32(vec![-2.7, 0.5, f32::NAN, 1e20, -1e20, 255.9, f32::INFINITY, -0.0]),
        HostData::F64(vec![-2.7, 300.25, f64::NAN, 1e300, -4e9, 4.3e9, f64::NEG_INFINITY, 65_535.5]),
        HostData::BF16([-2.7, 0.5, f32::NAN, 1e20, -1e20, 255.9, f32::INFINITY, 3.0e38].map(bf16::from_f32).to_vec()),
    ]
}

/// `data` cast to `to` with Rust's `as` (to bool: `!= 0`).
fn cast_host(data: &HostData, to: DType) -> HostData {
    macro_rules! cast {
        ($v:expr) => {
            match to {
                DType::F32 => HostData::F32($v.iter().map(|&x| x as f32).collect()),
                DType::F64 => HostData::F64($v.iter().map(|&x| x as f64).collect()),
                DType::BF16 => HostData::BF16($v.iter().map(|&x| bf16::from_f32(x as f32)).collect()),
                DType::I64 => HostData::I64($v.iter().map(|&x| x as i64).collect()),
                DType::U32 => HostData::U32($v.iter().map(|&x| x as u32).collect()),
                DType::U8 => HostData::U8($v.iter().map(|&x| x as u8).collect()),
                DType::Bool => HostData::Bool($v.iter().map(|&x| u8::from(x as f64 != 0.0)).collect()),
            }
        };
    }
    match data {
        HostData::F32(v) => cast!(v),
        HostData::F64(v) if to == DType::BF16 => HostData::BF16(v.iter().map(|&x| bf16::from_f64(x)).collect()),
        HostData::F64(v) => cast!(v),
        HostData::BF16(v) => cast!(v.iter().map(|x| x.to_f32()).collect::<Vec<_>>()),
        HostData::I64(v) => cast!(v),
        HostData::U32(v) => cast!(v),
        HostData::U8(v) | HostData::Bool(v) => cast!(v),
    }
}

/// Bitwise equality (NaN equals NaN), naming the case on failure.
fn same(what: &str, got: HostData, want: HostData) {
    let bits = |h: &HostData| -> Vec<u64> {
        match h {
            HostData::F32(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
            HostData::F64(v) => v.iter().map(|x| x.to_bits()).collect(),
            HostData::BF16(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
            HostData::I64(v) => v.iter().map(|&x| x as u64).collect(),
            HostData::U32(v) => v.iter().map(|&x| u64::from(x)).collect(),
            HostData::U8(v) | HostData::Bool(v) => v.iter().map(|&x| u64::from(x)).collect(),
        }
    };
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    let (g, w) = (bits(&got), bits(&want));
    if let Some(i) = g.iter().zip(&w).position(|(a, b)| a != b) {
        panic!("{what}: element {i}: got {got:?}, want {want:?}");
    }
}

/// `data` as a `[2, 4]` tensor seen transposed (`[4, 2]`, not contiguous), and its values in
/// that order.
fn transposed(data: &HostData, dev: &Device) -> Result<(Tensor, HostData)> {
    let t = Tensor::from_host(data, &[2, 4], dev)?.t()?;
    let order = [0, 4, 1, 5, 2, 6, 3, 7];
    let pick = |h: &HostData| match h {
        HostData::F32(v) => HostData::F32(order.iter().map(|&i| v[i]).collect()),
        HostData::F64(v) => HostData::F64(order.iter().map(|&i| v[i]).collect()),
        HostData::BF16(v) => HostData::BF16(order.iter().map(|&i| v[i]).collect()),
        HostData::I64(v) => HostData::I64(order.iter().map(|&i| v[i]).collect()),
        HostData::U32(v) => HostData::U32(order.iter().map(|&i| v[i]).collect()),
        HostData::U8(v) => HostData::U8(order.iter().map(|&i| v[i]).collect()),
        HostData::Bool(v) => HostData::Bool(order.iter().map(|&i| v[i]).collect()),
    };
    Ok((t, pick(data)))
}

/// The dtypes `dev` holds (f64 where it computes in it, bf16 where it casts to it).
fn dtypes(dev: &Device) -> Vec<DType> {
    let mut d = vec![DType::F32, DType::I64, DType::U32, DType::U8, DType::Bool];
    if beit_conformance::supports_f64(dev) {
        d.push(DType::F64);
    }
    if beit_conformance::supports_bf16(dev) {
        d.push(DType::BF16);
    }
    d
}

conformance! {
    /// Every dtype to every dtype, from a transposed view, and the contiguous copy of each.
    fn every_cast(dev: &Device) -> Result<()> {
        for src in sources() {
            if !dtypes(dev).contains(&src.dtype()) {
                continue;
            }
            let (t, values) = transposed(&src, dev)?;
            same(&format!("contiguous copy of {}", src.dtype()), t.contiguous()?.to_host()?, values.clone());
            for to in dtypes(dev) {
                same(&format!("{} to {to}", src.dtype()), t.to_dtype(to)?.to_host()?, cast_host(&values, to));
            }
        }
        Ok(())
    }

    /// All six comparisons on i64, u32 and u8, broadcasting a row against a column.
    fn integer_comparisons(dev: &Device) -> Result<()> {
        let (a, b) = (vec![-3i64, 0, 7, 1 << 40], vec![0i64, 7, -3]);
        let ops = [CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge];
        for dtype in [DType::I64, DType::U32, DType::U8] {
            let ta = Tensor::from_vec(a.clone(), &[1, 4], dev)?.to_dtype(dtype)?;
            let tb = Tensor::from_vec(b.clone(), &[3, 1], dev)?.to_dtype(dtype)?;
            let (ha, hb) = (cast_host(&HostData::I64(a.clone()), DType::I64), cast_host(&HostData::I64(b.clone()), DType::I64));
            let wrap = |h: HostData| -> Vec<i128> {
                match cast_host(&h, dtype) {
                    HostData::I64(v) => v.into_iter().map(i128::from).collect(),
                    HostData::U32(v) => v.into_iter().map(i128::from).collect(),
                    HostData::U8(v) => v.into_iter().map(i128::from).collect(),
                    _ => unreachable!("integer dtypes only"),
                }
            };
            let (va, vb) = (wrap(ha), wrap(hb));
            for op in ops {
                let got = ta.compare(&tb, op)?.to_host()?;
                let want: Vec<u8> = vb
                    .iter()
                    .flat_map(|&y| va.iter().map(move |&x| (x, y)))
                    .map(|(x, y)| {
                        u8::from(match op {
                            CmpOp::Eq => x == y,
                            CmpOp::Ne => x != y,
                            CmpOp::Lt => x < y,
                            CmpOp::Le => x <= y,
                            CmpOp::Gt => x > y,
                            CmpOp::Ge => x >= y,
                        })
                    })
                    .collect();
                same(&format!("{op:?} on {dtype}"), got, HostData::Bool(want));
            }
        }
        Ok(())
    }

    /// `where` with bool, u8 and i64 values; gathers of bool rows; i64 scatter-adds with
    /// repeated indices (i64 and u32 index tensors); i64 sums over rows and columns, and sums
    /// of squares that wrap (2^40 squared).
    fn integer_select_gather_sum(dev: &Device) -> Result<()> {
        let cond = Tensor::from_host(&HostData::Bool(vec![1, 0, 1, 1, 0, 0]), &[2, 3], dev)?;
        let on: Vec<u8> = vec![1, 1, 1, 0, 0, 0];
        let off: Vec<u8> = vec![0, 1, 0, 1, 0, 1];
        let picked: Vec<u8> = [1u8, 0, 1, 1, 0, 0].iter().zip(on.iter().zip(&off)).map(|(&c, (&a, &b))| if c != 0 { a } else { b }).collect();
        for dtype in [DType::Bool, DType::U8] {
            let (a, b) = (HostData::U8(on.clone()), HostData::U8(off.clone()));
            let (a, b) = (cast_host(&a, dtype), cast_host(&b, dtype));
            let got = cond.where_cond(&Tensor::from_host(&a, &[2, 3], dev)?, &Tensor::from_host(&b, &[2, 3], dev)?)?;
            same(&format!("where on {dtype}"), got.to_host()?, cast_host(&HostData::U8(picked.clone()), dtype));
        }
        let xs = Tensor::from_vec(vec![10i64, -20, 30, -40, 50, -60], &[2, 3], dev)?;
        let ys = Tensor::from_vec(vec![1i64, 2, 3, 4, 5, 6], &[2, 3], dev)?;
        same("where on i64", cond.where_cond(&xs, &ys)?.to_host()?, HostData::I64(vec![10, 2, 30, -40, 5, 6]));

        let rows = Tensor::from_host(&HostData::Bool(vec![1, 0, 0, 1, 1, 1]), &[3, 2], dev)?;
        for index in [HostData::I64(vec![2, 0, 2, 1]), HostData::U32(vec![2, 0, 2, 1])] {
            let idx = Tensor::from_host(&index, &[4], dev)?;
            let got = rows.index_select(0, &idx)?.to_host()?;
            same(&format!("bool rows gathered by {}", index.dtype()), got, HostData::Bool(vec![1, 1, 1, 0, 1, 1, 0, 1]));
            let dst = Tensor::from_vec(vec![100i64, 200, 300], &[3], dev)?;
            let src = Tensor::from_vec(vec![1i64, 2, 3, -4], &[4], dev)?;
            let got = dst.index_add(0, &idx, &src)?.to_host()?;
            same(&format!("i64 scatter-add by {}", index.dtype()), got, HostData::I64(vec![102, 196, 304]));
        }

        let big: Vec<i64> = (0..40 * 40).map(|i| (i * 7919 % 1000) - 500 + if i % 97 == 0 { 1 << 40 } else { 0 }).collect();
        let t = Tensor::from_vec(big.clone(), &[40, 40], dev)?;
        let rows_sum: Vec<i64> = (0..40).map(|r| (0..40).map(|c| big[r * 40 + c]).sum()).collect();
        let cols_sum: Vec<i64> = (0..40).map(|c| (0..40).map(|r| big[r * 40 + c]).sum()).collect();
        same("i64 sum of rows", t.sum(&[1], false)?.to_host()?, HostData::I64(rows_sum));
        same("i64 sum of columns", t.sum(&[0], false)?.to_host()?, HostData::I64(cols_sum));
        let rows_sq: Vec<i64> = (0..40).map(|r| (0..40).fold(0i64, |a, c| a.wrapping_add(big[r * 40 + c].wrapping_mul(big[r * 40 + c])))).collect();
        same("i64 sum of squares of rows", t.sum_squares(&[1], false)?.to_host()?, HostData::I64(rows_sq));
        same("i64 max of columns", t.max(&[0], false)?.to_host()?, HostData::I64((0..40).map(|c| (0..40).map(|r| big[r * 40 + c]).max().unwrap()).collect()));
        Ok(())
    }
}
