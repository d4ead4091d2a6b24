//! Bad inputs: each is an `Err` (never a panic) whose message names the op and the culprit
//! (shapes, dtypes, the bad index or k). Device mismatches need two backends and are not
//! covered here.

use beit_conformance::{assert_err, conformance, supports_f64, Gen};
use beit_engine::{DType, Device, Result, Tensor, IGNORE_INDEX};

/// A `[rows, cols]` f32 tensor of random values.
fn matrix(rows: usize, cols: usize, dev: &Device) -> Result<Tensor> {
    Gen::new(1).normal(&[rows, cols], 1.0).to_tensor(DType::F32, dev)
}

/// i64 indices.
fn indices(values: &[i64], dev: &Device) -> Result<Tensor> {
    Tensor::from_slice(values, &[values.len()], dev)
}

conformance! {
    /// `[2, 3] @ [4, 5]`, and a 1-D operand.
    fn matmul_shape_mismatch(dev: &Device) -> Result<()> {
        assert_err(matrix(2, 3, dev)?.matmul(&matrix(4, 5, dev)?), &["matmul", "[2, 3]", "[4, 5]"]);
        assert_err(matrix(2, 3, dev)?.matmul(&matrix(3, 1, dev)?.reshape(&[3])?), &["matmul", "[3]"]);
        Ok(())
    }

    /// `[2, 3] + [4]`, and the same for every broadcasting op.
    fn binary_not_broadcastable(dev: &Device) -> Result<()> {
        let (a, b) = (matrix(2, 3, dev)?, matrix(1, 4, dev)?.reshape(&[4])?);
        assert_err(a.add(&b), &["add", "[2, 3]", "[4]"]);
        assert_err(a.maximum(&b), &["maximum", "[2, 3]", "[4]"]);
        assert_err(a.broadcast_as(&[4, 2]), &["broadcast", "[2, 3]", "[4, 2]"]);
        Ok(())
    }

    /// f32 with f64 (where the backend has f64) and f32 with i64.
    fn dtype_mismatch(dev: &Device) -> Result<()> {
        let a = matrix(2, 3, dev)?;
        if supports_f64(dev) {
            assert_err(a.add(&a.to_dtype(DType::F64)?), &["add", "dtype mismatch", "F32", "F64"]);
            assert_err(a.matmul(&a.t()?.to_dtype(DType::F64)?), &["matmul", "F32", "F64"]);
        }
        assert_err(a.mul(&Tensor::zeros(&[2, 3], DType::I64, dev)?), &["mul", "F32", "I64"]);
        assert_err(indices(&[1, 2], dev)?.exp(), &["exp", "I64"]);
        Ok(())
    }

    /// An index equal to the dim size, for gather and scatter-add.
    fn index_out_of_range(dev: &Device) -> Result<()> {
        let x = matrix(5, 3, dev)?;
        assert_err(x.index_select(0, &indices(&[0, 5], dev)?), &["index_select", "5"]);
        assert_err(x.index_add(0, &indices(&[7, 1], dev)?, &matrix(2, 3, dev)?), &["index_add", "7"]);
        assert_err(x.index_select(2, &indices(&[0], dev)?), &["index_select", "dim 2"]);
        Ok(())
    }

    /// A target equal to the class count, and a negative target that is not IGNORE_INDEX.
    fn cross_entropy_target_out_of_range(dev: &Device) -> Result<()> {
        let logits = matrix(3, 5, dev)?;
        assert_err(logits.cross_entropy(&indices(&[0, 5, IGNORE_INDEX], dev)?, 0.1), &["cross_entropy", "5"]);
        assert_err(logits.cross_entropy(&indices(&[-1, 0, 1], dev)?, 0.0), &["cross_entropy", "-1"]);
        assert_err(logits.cross_entropy(&indices(&[0, 1], dev)?, 0.0), &["cross_entropy", "[3, 5]", "[2]"]);
        assert_err(logits.cross_entropy(&indices(&[0, 1, 2], dev)?, 1.0), &["cross_entropy", "smoothing"]);
        Ok(())
    }

    /// k larger than the last dim, and k = 0.
    fn topk_bad_k(dev: &Device) -> Result<()> {
        let x = matrix(2, 7, dev)?;
        assert_err(x.topk(8), &["topk", "k = 8", "7"]);
        assert_err(x.topk(0), &["topk", "k = 0"]);
        Ok(())
    }

    /// topk has no backward: a tracked input is an error that says to detach it.
    fn topk_on_tracked_input(dev: &Device) -> Result<()> {
        let x = matrix(2, 7, dev)?.requires_grad(true)?;
        assert_err(x.topk(2), &["topk", "detach"]);
        assert_err(x.exp()?.topk(2), &["topk"]);
        x.detach().topk(2)?;
        Ok(())
    }

    /// The graph is consumed by the first backward.
    fn backward_twice(dev: &Device) -> Result<()> {
        let x = matrix(2, 3, dev)?.requires_grad(true)?;
        let loss = x.exp()?.sum_all()?;
        loss.backward()?;
        assert_err(loss.backward(), &["backward", "already consumed"]);
        Ok(())
    }

    /// backward needs a scalar that tracks gradients.
    fn backward_bad_root(dev: &Device) -> Result<()> {
        let x = matrix(2, 3, dev)?.requires_grad(true)?;
        assert_err(x.exp()?.backward(), &["backward", "scalar", "[2, 3]"]);
        assert_err(matrix(2, 3, dev)?.sum_all()?.backward(), &["backward", "does not track"]);
        Ok(())
    }

    /// Shapes that do not fit the op: layer_norm parameters, cat, reshape, narrow,
    /// permute, conv weights, pooling and reductions over missing dims.
    fn shape_errors(dev: &Device) -> Result<()> {
        let x = matrix(4, 6, dev)?;
        let w = matrix(1, 5, dev)?.reshape(&[5])?;
        assert_err(x.layer_norm(Some(&w), None, 1e-5), &["layer_norm", "[4, 6]", "[5]"]);
        assert_err(Tensor::cat(&[&x, &matrix(3, 5, dev)?], 0), &["cat", "[4, 6]", "[3, 5]"]);
        assert_err(x.reshape(&[5, 5]), &["reshape", "[4, 6]", "[5, 5]"]);
        assert_err(x.narrow(1, 4, 3), &["narrow", "4..7"]);
        assert_err(x.narrow(1, usize::MAX, 2), &["narrow", "out of bounds"]);
        assert_err(x.permute(&[0, 0]), &["permute", "[0, 0]"]);
        assert_err(x.sum(&[2], false), &["sum", "dim 2"]);
        let image = Tensor::zeros(&[1, 3, 4, 4], DType::F32, dev)?;
        assert_err(image.conv2d(&Tensor::zeros(&[2, 2, 3, 3], DType::F32, dev)?, None, (1, 1), (0, 0)), &["conv2d"]);
        assert_err(image.unfold2d((5, 5), (1, 1), (0, 0)), &["unfold2d", "(5, 5)"]);
        let empty = Tensor::zeros(&[1, 3, 0, 0], DType::F32, dev)?;
        assert_err(empty.conv2d(&Tensor::zeros(&[2, 3, 1, 1], DType::F32, dev)?, None, (1, 1), (0, 0)), &["conv2d", "(1, 1)"]);
        assert_err(image.patchify_conv(&Tensor::zeros(&[2, 3, 3, 3], DType::F32, dev)?, None, 3), &["patchify", "3"]);
        assert_err(matrix(1, 6, dev)?.reshape(&[1, 1, 1, 6])?.max_pool2x2(), &["max_pool2x2", "2x2"]);
        Ok(())
    }

    /// Out-of-range probabilities and a float condition.
    fn argument_errors(dev: &Device) -> Result<()> {
        let x = matrix(4, 6, dev)?;
        assert_err(x.dropout(1.0, 0), &["dropout", "1"]);
        assert_err(x.drop_path(-0.1, 0), &["drop_path", "-0.1"]);
        assert_err(x.where_cond(&x, &x), &["where_cond", "F32"]);
        Ok(())
    }
}
