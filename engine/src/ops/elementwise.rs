//! Broadcasting binary ops, comparisons, `where` and the mask blend.

use crate::layout::broadcast_shapes;
use crate::{BinaryOp, CmpOp, DType, Result, Tensor};

impl Tensor {
    fn binary(&self, rhs: &Tensor, op: BinaryOp, name: &'static str) -> Result<Tensor> {
        self.check_same(rhs, name)?;
        let shape = broadcast_shapes(name, self.shape(), rhs.shape())?;
        let (l, r) = (self.layout().broadcast_to(&shape)?, rhs.layout().broadcast_to(&shape)?);
        let out = self.device().backend().binary(op, self.view_with(&l), rhs.view_with(&r))?;
        let (a, b) = (self.clone(), rhs.clone());
        Tensor::from_op(out, &shape, self.device(), name, &[self, rhs], move |g, needs| {
            let (ga, gb) = match op {
                BinaryOp::Add => (needs[0].then(|| g.clone()), needs[1].then(|| g.clone())),
                BinaryOp::Sub => (needs[0].then(|| g.clone()), if needs[1] { Some(g.neg()?) } else { None }),
                BinaryOp::Mul => (
                    if needs[0] { Some(g.mul(&b)?) } else { None },
                    if needs[1] { Some(g.mul(&a)?) } else { None },
                ),
                BinaryOp::Div => {
                    let ga = g.div(&b)?;
                    let gb = if needs[1] { Some(ga.mul(&a)?.div(&b)?.neg()?) } else { None };
                    (Some(ga), gb)
                }
                BinaryOp::Maximum | BinaryOp::Minimum => {
                    let cmp = if op == BinaryOp::Maximum { CmpOp::Ge } else { CmpOp::Le };
                    let pick_a = a.compare(&b, cmp)?;
                    let zero = Tensor::zeros(&[], g.dtype(), g.device())?;
                    (Some(pick_a.where_cond(g, &zero)?), Some(pick_a.where_cond(&zero, g)?))
                }
            };
            Ok(vec![reduce_to(ga, a.shape())?, reduce_to(gb, b.shape())?])
        })
    }

    /// `self + rhs`, broadcasting.
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Add, "add")
    }

    /// `self - rhs`, broadcasting.
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Sub, "sub")
    }

    /// `self * rhs`, broadcasting.
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Mul, "mul")
    }

    /// `self / rhs`, broadcasting.
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Div, "div")
    }

    /// Elementwise maximum, broadcasting (ties send the gradient to `self`).
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Maximum, "maximum")
    }

    /// Elementwise minimum, broadcasting (ties send the gradient to `self`).
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Minimum, "minimum")
    }

    /// Elementwise comparison, broadcasting; a [`DType::Bool`] tensor (no gradient).
    pub fn compare(&self, rhs: &Tensor, op: CmpOp) -> Result<Tensor> {
        self.check_same(rhs, "compare")?;
        let shape = broadcast_shapes("compare", self.shape(), rhs.shape())?;
        let (l, r) = (self.layout().broadcast_to(&shape)?, rhs.layout().broadcast_to(&shape)?);
        let out = self.device().backend().cmp(op, self.view_with(&l), rhs.view_with(&r))?;
        Tensor::from_storage(out, &shape, self.device())
    }

    /// `self ? on_true : on_false` for a u8/bool `self`, broadcasting all three.
    pub fn where_cond(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        if !matches!(self.dtype(), DType::U8 | DType::Bool) {
            return Err(crate::Error::DType { op: "where_cond", dtype: self.dtype(), expected: Some(DType::Bool) });
        }
        on_true.check_same(on_false, "where_cond")?;
        if !self.device().same(on_true.device()) {
            return Err(crate::Error::DeviceMismatch {
                op: "where_cond",
                lhs: self.device().name(),
                rhs: on_true.device().name(),
            });
        }
        let s = broadcast_shapes("where_cond", on_true.shape(), on_false.shape())?;
        let shape = broadcast_shapes("where_cond", self.shape(), &s)?;
        let lc = self.layout().broadcast_to(&shape)?;
        let (lt, lf) = (on_true.layout().broadcast_to(&shape)?, on_false.layout().broadcast_to(&shape)?);
        let out =
            self.device().backend().where_cond(self.view_with(&lc), on_true.view_with(&lt), on_false.view_with(&lf))?;
        let cond = self.clone();
        let (ts, fs) = (on_true.shape().to_vec(), on_false.shape().to_vec());
        Tensor::from_op(out, &shape, self.device(), "where_cond", &[on_true, on_false], move |g, needs| {
            let zero = Tensor::zeros(&[], g.dtype(), g.device())?;
            let gt = if needs[0] { Some(cond.where_cond(g, &zero)?) } else { None };
            let gf = if needs[1] { Some(cond.where_cond(&zero, g)?) } else { None };
            Ok(vec![reduce_to(gt, &ts)?, reduce_to(gf, &fs)?])
        })
    }

    /// The mask blend `self·(1−m) + t·m` for a float or bool mask `m` (BEiT's mask token).
    pub fn mask_blend(&self, mask: &Tensor, t: &Tensor) -> Result<Tensor> {
        if mask.dtype().is_float() {
            let one = Tensor::ones(&[], mask.dtype(), mask.device())?;
            self.mul(&one.sub(mask)?)?.add(&t.mul(mask)?)
        } else {
            mask.where_cond(t, self)
        }
    }
}

/// Sum a broadcast gradient back to `shape`.
fn reduce_to(g: Option<Tensor>, shape: &[usize]) -> Result<Option<Tensor>> {
    g.map(|g| g.sum_to_shape(shape)).transpose()
}
