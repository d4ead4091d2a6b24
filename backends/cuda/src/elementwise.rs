//! Elementwise ops: unary, binary, comparison, select and the GELU gradient
//! (kernels/elementwise.cu).

use crate::alloc::{boxed, CudaStorage};
use crate::driver::{args, Grid};
use crate::geometry::walk;
use crate::gpu::{bits, float, same_dtype, same_shape, suffix, CudaBackend};
use beit_engine::backend::Elementwise;
use beit_engine::{BinaryOp, CmpOp, DType, Error, Result, StorageBox, UnaryOp, View};

/// The kernel name part of a unary op and its two scalar parameters: `unary_<name>_<dtype>`
/// in kernels/elementwise.cu (affine: x·p + q; powf: x^p).
fn unary_kernel(op: UnaryOp) -> (&'static str, f64, f64) {
    match op {
        UnaryOp::Neg => ("neg", 0.0, 0.0),
        UnaryOp::Exp => ("exp", 0.0, 0.0),
        UnaryOp::Log => ("log", 0.0, 0.0),
        UnaryOp::Sqrt => ("sqrt", 0.0, 0.0),
        UnaryOp::Tanh => ("tanh", 0.0, 0.0),
        UnaryOp::Erf => ("erf", 0.0, 0.0),
        UnaryOp::Abs => ("abs", 0.0, 0.0),
        UnaryOp::Relu => ("relu", 0.0, 0.0),
        UnaryOp::Sqr => ("sqr", 0.0, 0.0),
        UnaryOp::Recip => ("recip", 0.0, 0.0),
        UnaryOp::Sigmoid => ("sigmoid", 0.0, 0.0),
        UnaryOp::Gelu => ("gelu", 0.0, 0.0),
        UnaryOp::Affine { mul, add } => ("affine", mul, add),
        UnaryOp::Powf(p) => ("powf", p, 0.0),
    }
}

/// `binary_<name>_<dtype>` in kernels/elementwise.cu.
fn binary_kernel(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "sub",
        BinaryOp::Mul => "mul",
        BinaryOp::Div => "div",
        BinaryOp::Maximum => "maximum",
        BinaryOp::Minimum => "minimum",
    }
}

/// `cmp_<name>_<dtype>` in kernels/elementwise.cu.
fn cmp_kernel(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "eq",
        CmpOp::Ne => "ne",
        CmpOp::Lt => "lt",
        CmpOp::Le => "le",
        CmpOp::Gt => "gt",
        CmpOp::Ge => "ge",
    }
}

fn check_pair(op: &'static str, lhs: View, rhs: View) -> Result<()> {
    same_dtype(op, lhs, rhs)?;
    same_shape(op, lhs.shape(), rhs.shape())
}

impl CudaBackend {

    /// A two-input kernel `<name>(n, dims, offs a, offs b, a, b, out)` over views of one shape.
    fn map2(&self, op: &'static str, name: &str, lhs: View, rhs: View, out_dtype: DType) -> Result<CudaStorage> {
        let (a, b) = (self.buffer(op, lhs)?, self.buffer(op, rhs)?);
        let n = lhs.layout.numel();
        let out = self.alloc(out_dtype, n)?;
        if n == 0 {
            return Ok(out);
        }
        let (d, [oa, ob]) = walk(op, lhs.shape(), [lhs.layout, rhs.layout])?;
        let (n64, ap, bp, o) = (n as i64, a.at(0), b.at(0), out.at(0));
        // SAFETY: both layouts were checked against their buffers; `out` holds n elements.
        unsafe { self.driver.launch("elementwise", name, Grid::elements(n), &args![n64, d, oa, ob, ap, bp, o])? }
        Ok(out)
    }




}

impl Elementwise for CudaBackend {
    /// Elementwise unary op on a float view.
    fn unary(&self, op: UnaryOp, src: View) -> Result<StorageBox> {
        const OP: &str = "unary";
        let dtype = src.dtype();
        float(OP, dtype)?;
        let s = self.buffer(OP, src)?;
        let n = src.layout.numel();
        let out = self.alloc(dtype, n)?;
        if n == 0 {
            return Ok(boxed(out));
        }
        let (d, [oa]) = walk(OP, src.shape(), [src.layout])?;
        let (kernel, p, q) = unary_kernel(op);
        let name = format!("unary_{kernel}_{}", suffix(dtype));
        let (n64, sp, o) = (n as i64, s.at(0), out.at(0));
        // SAFETY: as in cast; the scalar parameters have the kernel's float type.
        unsafe {
            if dtype == DType::F32 {
                self.driver.launch("elementwise", &name, Grid::elements(n), &args![n64, d, oa, sp, o, p as f32, q as f32])?
            } else {
                self.driver.launch("elementwise", &name, Grid::elements(n), &args![n64, d, oa, sp, o, p, q])?
            }
        }
        Ok(boxed(out))
    }

    /// Elementwise binary op: floats all ops, i64 all but `Div`.
    fn binary(&self, op: BinaryOp, lhs: View, rhs: View) -> Result<StorageBox> {
        const OP: &str = "binary";
        check_pair(OP, lhs, rhs)?;
        let dtype = lhs.dtype();
        match dtype {
            DType::I64 if op == BinaryOp::Div => Err(Error::DType { op: "binary div", dtype, expected: None }),
            DType::F32 | DType::F64 | DType::I64 => {
                self.map2(OP, &format!("binary_{}_{}", binary_kernel(op), suffix(dtype)), lhs, rhs, dtype).map(boxed)
            }
            _ => Err(Error::DType { op: OP, dtype, expected: None }),
        }
    }

    /// Elementwise comparison giving bool.
    fn cmp(&self, op: CmpOp, lhs: View, rhs: View) -> Result<StorageBox> {
        const OP: &str = "cmp";
        check_pair(OP, lhs, rhs)?;
        self.map2(OP, &format!("cmp_{}_{}", cmp_kernel(op), suffix(lhs.dtype())), lhs, rhs, DType::Bool).map(boxed)
    }

    /// `cond ? on_true : on_false`; `cond` is u8 or bool.
    fn where_cond(&self, cond: View, on_true: View, on_false: View) -> Result<StorageBox> {
        const OP: &str = "where_cond";
        check_pair(OP, on_true, on_false)?;
        same_shape(OP, cond.shape(), on_true.shape())?;
        if !matches!(cond.dtype(), DType::U8 | DType::Bool) {
            return Err(Error::DType { op: OP, dtype: cond.dtype(), expected: Some(DType::U8) });
        }
        let (c, a, b) = (self.buffer(OP, cond)?, self.buffer(OP, on_true)?, self.buffer(OP, on_false)?);
        let dtype = on_true.dtype();
        let n = cond.layout.numel();
        let out = self.alloc(dtype, n)?;
        if n == 0 {
            return Ok(boxed(out));
        }
        let (d, [oc, oa, ob]) = walk(OP, cond.shape(), [cond.layout, on_true.layout, on_false.layout])?;
        let (n64, cp, ap, bp, o) = (n as i64, c.at(0), a.at(0), b.at(0), out.at(0));
        let name = format!("where_{}", bits(dtype));
        // SAFETY: every layout was checked against its buffer.
        unsafe { self.driver.launch("elementwise", &name, Grid::elements(n), &args![n64, d, oc, oa, ob, cp, ap, bp, o])? };
        Ok(boxed(out))
    }

    /// `dy · GELU'(x)`.
    fn gelu_backward(&self, x: View, dy: View) -> Result<StorageBox> {
        const OP: &str = "gelu_backward";
        check_pair(OP, x, dy)?;
        float(OP, x.dtype())?;
        self.map2(OP, &format!("gelu_backward_{}", suffix(x.dtype())), x, dy, x.dtype()).map(boxed)
    }
}
