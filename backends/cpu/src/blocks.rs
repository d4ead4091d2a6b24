//! How a product is cut between threads ([`Split`], [`for_blocks`]), and the pointer to the
//! output that the threads write ([`OutPtr`]).

use rayon::prelude::*;
use std::ops::Range;

/// Below this many multiply-adds a matmul runs on the calling thread.
const PAR_MIN_MACS: usize = 1 << 18;

/// The pointer to a shared output, for threads that write disjoint blocks of it.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr<T>(pub(crate) *mut T);
// SAFETY: every task writes a block no other task touches.
unsafe impl<T> Send for OutPtr<T> {}
unsafe impl<T> Sync for OutPtr<T> {}

impl<T> OutPtr<T> {
    /// The pointer `n` elements further.
    ///
    /// # Safety
    /// The result must stay inside the output buffer.
    pub(crate) unsafe fn add(self, n: usize) -> Self {
        OutPtr(self.0.add(n))
    }
}

/// The operand of a product `A·B` that every block of a cut entry reads whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shared {
    /// A, when entries are cut by columns.
    A,
    /// B, when entries are cut by rows.
    B,
}

/// The blocks that cover `batch` outputs of `m × n`: each entry's longer side is cut into
/// `threads / gcd(batch, threads)` blocks (multiples of the tile's rows or columns), so that
/// the blocks divide evenly among the threads with as few cuts (each block reads the other
/// operand whole) as possible; small products are not cut and run on the calling thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Split {
    batch: usize,
    m: usize,
    n: usize,
    /// Whether entries are cut by rows (else by columns).
    by_rows: bool,
    /// Rows or columns of a block (the last may have fewer).
    step: usize,
    /// Blocks per entry.
    blocks: usize,
    /// Whether the blocks run on the calling thread.
    serial: bool,
}

impl Split {
    /// The cut of `batch` products `[m, k] · [k, n]` whose blocks are multiples of `tiles`
    /// (rows, columns), for this thread pool.
    pub(crate) fn new(batch: usize, m: usize, k: usize, n: usize, tiles: (usize, usize)) -> Split {
        let threads = rayon::current_num_threads();
        let per_entry = if m * n * k < PAR_MIN_MACS { 1 } else { threads / gcd(batch, threads) };
        let by_rows = m >= n;
        let (len, tile) = if by_rows { (m, tiles.0) } else { (n, tiles.1) };
        let step = len.div_ceil(per_entry).div_ceil(tile).max(1) * tile;
        let blocks = len.div_ceil(step);
        let serial = batch * m * n * k < PAR_MIN_MACS || batch * blocks == 1;
        Split { batch, m, n, by_rows, step, blocks, serial }
    }

    /// The operand that all blocks of an entry read whole, when entries are cut.
    pub(crate) fn shared(&self) -> Option<Shared> {
        (self.blocks > 1).then_some(if self.by_rows { Shared::B } else { Shared::A })
    }

    /// Runs `f(entry, rows, cols)` over the blocks, in parallel unless the cut is serial.
    pub(crate) fn run<F>(&self, f: F)
    where
        F: Fn(usize, Range<usize>, Range<usize>) + Send + Sync,
    {
        let len = if self.by_rows { self.m } else { self.n };
        let run = |t: usize| {
            let (i, j) = (t / self.blocks, t % self.blocks);
            let part = j * self.step..((j + 1) * self.step).min(len);
            if self.by_rows {
                f(i, part, 0..self.n)
            } else {
                f(i, 0..self.m, part)
            }
        };
        if self.serial {
            (0..self.batch * self.blocks).for_each(run);
        } else {
            (0..self.batch * self.blocks).into_par_iter().for_each(run);
        }
    }
}

/// Runs `f(entry, rows, cols)` over the blocks of [`Split::new`]`(batch, m, k, n, tiles)`.
pub(crate) fn for_blocks<F>(batch: usize, m: usize, k: usize, n: usize, tiles: (usize, usize), f: F)
where
    F: Fn(usize, Range<usize>, Range<usize>) + Send + Sync,
{
    Split::new(batch, m, k, n, tiles).run(f)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
