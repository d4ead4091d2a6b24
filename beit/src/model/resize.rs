//! Resolution change: resizing a checkpoint's relative position bias tables (bilinear)
//! and absolute position embeddings (bicubic) to another patch grid, as Hugging Face does
//! with `interpolate_pos_encoding=True` (PyTorch `interpolate`, `align_corners=False`).

pub use beit_engine::Interp;
use beit_engine::{interp_taps, Error, Result, Tensor};

/// Resize a channels-last grid `[h, w, c]` to `[oh, ow, c]`.
pub fn resize_grid(data: &[f64], (h, w, c): (usize, usize, usize), (oh, ow): (usize, usize), mode: Interp) -> Vec<f64> {
    let mut out = vec![0.0; oh * ow * c];
    for oy in 0..oh {
        let ty = interp_taps(oy, h, oh, mode);
        for ox in 0..ow {
            let tx = interp_taps(ox, w, ow, mode);
            let dst = &mut out[(oy * ow + ox) * c..][..c];
            for &(y, wy) in &ty {
                for &(x, wx) in &tx {
                    let src = &data[(y * w + x) * c..][..c];
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += wy * wx * s);
                }
            }
        }
    }
    out
}

fn side_of(n: usize, key: &str, what: &str) -> Result<usize> {
    let s = (n as f64).sqrt().round() as usize;
    if s * s != n {
        return Err(Error::invalid("resize", format!("`{key}`: {what} {n} is not a square grid")));
    }
    Ok(s)
}

/// A `((2Wh−1)(2Ww−1)+3, heads)` table resized to the window `(wh, ww)`: the patch part is
/// interpolated bilinearly, the three CLS rows are kept (Hugging Face's runtime path,
/// including its width-first reshape).
pub fn resize_rel_pos_table(table: &Tensor, window: (usize, usize), key: &str) -> Result<Tensor> {
    let [rows, heads] = *table.shape() else {
        return Err(Error::invalid("resize", format!("`{key}` must be 2-D, got {:?}", table.shape())));
    };
    let side = side_of(rows.saturating_sub(3), key, "relative distance count")?;
    let v = table.to_vec_f64()?;
    let (nh, nw) = (2 * window.0 - 1, 2 * window.1 - 1);
    let mut out = resize_grid(&v[..side * side * heads], (side, side, heads), (nh, nw), Interp::Bilinear);
    out.extend_from_slice(&v[side * side * heads..]);
    Tensor::from_vec(out, &[nh * nw + 3, heads], table.device())?.to_dtype(table.dtype())
}

/// `[1, 1+N, D]` absolute position embeddings resized to a `(gh, gw)` patch grid
/// (bicubic; the CLS position is kept).
pub fn resize_pos_embed(pos: &Tensor, grid: (usize, usize), key: &str) -> Result<Tensor> {
    let [1, tokens, d] = *pos.shape() else {
        return Err(Error::invalid("resize", format!("`{key}` must be [1, 1+N, D], got {:?}", pos.shape())));
    };
    let side = side_of(tokens.saturating_sub(1), key, "patch count")?;
    let v = pos.to_vec_f64()?;
    let mut out = v[..d].to_vec();
    out.extend(resize_grid(&v[d..], (side, side, d), grid, Interp::Bicubic));
    Tensor::from_vec(out, &[1, grid.0 * grid.1 + 1, d], pos.device())?.to_dtype(pos.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity_and_upsampling_matches_pytorch() {
        let data: Vec<f64> = (0..12).map(|i| (i * i) as f64).collect();
        for mode in [Interp::Bilinear, Interp::Bicubic] {
            assert_eq!(resize_grid(&data, (3, 4, 1), (3, 4), mode), data);
        }
        // torch.nn.functional.interpolate(torch.tensor([[[[0., 1., 4.]]]]), size=(1, 5), mode=...)
        let row = [0.0, 1.0, 4.0];
        let lin = resize_grid(&row, (1, 3, 1), (1, 5), Interp::Bilinear);
        let want = [0.0, 0.4, 1.0, 2.8, 4.0];
        assert!(lin.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{lin:?}");
        let cub = resize_grid(&row, (1, 3, 1), (1, 5), Interp::Bicubic);
        let want = [-0.096, 0.172, 1.0, 2.908, 4.288];
        assert!(cub.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{cub:?}");
    }
}
