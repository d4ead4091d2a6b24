//! BEiT's relative position bias: a `((2Wh−1)(2Ww−1)+3, heads)` table indexed by the
//! relative offset of every (query, key) token pair, with three extra entries for the CLS
//! token (CLS→token, token→CLS, CLS→CLS).

use beit_engine::autograd::is_grad_enabled;
use beit_engine::nn::{Init, Module, Param, VarBuilder};
use beit_engine::{Device, Result, Tensor};
use std::sync::Mutex;

/// The `(N+1)²` table index for a `(wh, ww)` patch window, row-major over (query, key).
pub fn relative_position_index(wh: usize, ww: usize) -> Vec<u32> {
    let n = (2 * wh - 1) * (2 * ww - 1) + 3;
    let len = wh * ww + 1;
    let mut idx = vec![0u32; len * len];
    for i in 1..len {
        let (hi, wi) = ((i - 1) / ww, (i - 1) % ww);
        for j in 1..len {
            let (hj, wj) = ((j - 1) / ww, (j - 1) % ww);
            idx[i * len + j] = ((hi + wh - 1 - hj) * (2 * ww - 1) + (wi + ww - 1 - wj)) as u32;
        }
    }
    // Row 0 (CLS -> tokens), then column 0 (tokens -> CLS), then [0][0], in this order.
    let n = n as u32;
    idx[..len].fill(n - 3);
    for i in 0..len {
        idx[i * len] = n - 2;
    }
    idx[0] = n - 1;
    idx
}

/// A gathered bias of at most this many bytes (4 MiB) is kept between forwards without
/// gradients (BEiT-Base at 224: 12 heads × 197² f32, 1.8 MiB a layer). Larger ones (15 MiB
/// at 384, 48 MiB at 512) are gathered again each forward: kept in every layer they took
/// 577 MiB at 512, a quarter of the segmentation forward's 2258 MiB peak then, to save 2–5%
/// of its time.
const KEEP_BYTES: usize = 4 << 20;

/// A relative position bias table and its index (u32) for one window.
pub struct RelativePositionBias {
    table: Param,
    index: Tensor,
    tokens: usize,
    heads: usize,
    /// The last bias gathered without gradients, with the table's version it came from
    /// (only biases of at most [`KEEP_BYTES`]).
    gathered: Mutex<Option<(u64, Tensor)>>,
}

impl RelativePositionBias {
    /// The table `relative_position_bias_table` under `vb` (zero-initialised, as BEiT).
    pub fn new(vb: &VarBuilder, window: (usize, usize), heads: usize, device: &Device) -> Result<Self> {
        let (wh, ww) = window;
        let rows = (2 * wh - 1) * (2 * ww - 1) + 3;
        let table = vb.param("relative_position_bias_table", &[rows, heads], Init::Const(0.0))?;
        let tokens = wh * ww + 1;
        let index = Tensor::from_vec(relative_position_index(wh, ww), &[tokens * tokens], device)?;
        Ok(RelativePositionBias { table, index, tokens, heads, gathered: Mutex::new(None) })
    }

    /// The bias `[heads, N+1, N+1]` to add to attention logits, contiguous (gathered from
    /// the transposed table, so that each head's rows are read in order). Without gradients
    /// (inference, evaluation) a gathered bias of at most 4 MiB is kept and reused
    /// until the table changes ([`Param::version`]): one gather per model instead of one per
    /// forward.
    pub fn forward(&self) -> Result<Tensor> {
        // The version first: the table read after it is at least as new.
        let version = self.table.version();
        let table = self.table.tensor();
        let bytes = self.heads * self.tokens * self.tokens * table.dtype().size_in_bytes();
        if (is_grad_enabled() && table.tracks_grad()) || bytes > KEEP_BYTES {
            return self.gather(&table);
        }
        let mut kept = self.gathered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, bias)) = kept.as_ref() {
            if *v == version {
                return Ok(bias.clone());
            }
        }
        let bias = self.gather(&table)?;
        *kept = Some((version, bias.clone()));
        Ok(bias)
    }

    /// The bias gathered from `table`.
    fn gather(&self, table: &Tensor) -> Result<Tensor> {
        let n = self.tokens;
        table.t()?.index_select(1, &self.index)?.reshape(&[self.heads, n, n])
    }
}

impl Module for RelativePositionBias {
    fn params(&self) -> Vec<Param> {
        vec![self.table.clone()]
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn index_matches_the_reference_2x2_example() {
        // BEIT-SPEC §3: rows for a 2x2 window (n = 12).
        let expect = [[11, 9, 9, 9, 9], [10, 4, 3, 1, 0], [10, 5, 4, 2, 1], [10, 7, 6, 4, 3], [10, 8, 7, 5, 4]];
        let idx = super::relative_position_index(2, 2);
        assert_eq!(idx, expect.iter().flatten().copied().collect::<Vec<u32>>());
        let big = super::relative_position_index(14, 14);
        assert_eq!((big[0], big[197], big[1], *big.iter().max().unwrap()), (731, 730, 729, 731));
    }
}
