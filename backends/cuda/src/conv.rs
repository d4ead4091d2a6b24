//! im2col and col2im for 2-D convolutions (kernels/conv.cu).

use crate::alloc::boxed;
use crate::driver::{args, Grid};
use crate::gpu::{float, same_shape, suffix, CudaBackend};
use beit_engine::backend::Conv as ConvFamily;
use beit_engine::{ConvGeom, Result, StorageBox, View};

/// The geometry as the kernels read it (`Conv` in conv.cu).
#[repr(C)]
#[derive(Clone, Copy)]
struct Conv {
    batch: i64,
    channels: i64,
    height: i64,
    width: i64,
    kh: i64,
    kw: i64,
    sh: i64,
    sw: i64,
    ph: i64,
    pw: i64,
    oh: i64,
    ow: i64,
}

/// Check the geometry and convert it.
fn conv(op: &'static str, g: &ConvGeom) -> Result<Conv> {
    let (oh, ow) = beit_engine::checks::conv_out(op, g)?;
    let i = |v: usize| v as i64;
    Ok(Conv {
        batch: i(g.batch),
        channels: i(g.channels),
        height: i(g.height),
        width: i(g.width),
        kh: i(g.kernel.0),
        kw: i(g.kernel.1),
        sh: i(g.stride.0),
        sw: i(g.stride.1),
        ph: i(g.padding.0),
        pw: i(g.padding.1),
        oh: i(oh),
        ow: i(ow),
    })
}

impl CudaBackend {

}

impl ConvFamily for CudaBackend {
    /// NCHW `x` to `[batch, out_h·out_w, channels·kh·kw]`, zero padded.
    fn im2col(&self, x: View, g: &ConvGeom) -> Result<StorageBox> {
        const OP: &str = "im2col";
        let c = conv(OP, g)?;
        same_shape(OP, x.shape(), &[g.batch, g.channels, g.height, g.width])?;
        float(OP, x.dtype())?;
        let xs = self.contiguous(OP, x)?;
        let total = g.batch * g.out_h() * g.out_w() * g.patch_len();
        let out = self.alloc(x.dtype(), total)?;
        if total > 0 {
            let o = out.at(0);
            let name = format!("im2col_{}", suffix(x.dtype()));
            // SAFETY: x holds the NCHW input, out `total` elements.
            unsafe { self.driver.launch("conv", &name, Grid::elements(total), &args![c, xs.ptr, o])? };
        }
        Ok(boxed(out))
    }

    /// The adjoint of im2col: patches summed back into `[B, C, H, W]`.
    fn col2im(&self, cols: View, g: &ConvGeom) -> Result<StorageBox> {
        const OP: &str = "col2im";
        let c = conv(OP, g)?;
        same_shape(OP, cols.shape(), &[g.batch, g.out_h() * g.out_w(), g.patch_len()])?;
        float(OP, cols.dtype())?;
        let cs = self.contiguous(OP, cols)?;
        let total = g.batch * g.channels * g.height * g.width;
        let out = self.alloc(cols.dtype(), total)?;
        if total > 0 {
            let o = out.at(0);
            let name = format!("col2im_{}", suffix(cols.dtype()));
            // SAFETY: cols holds the patches, out `total` elements.
            unsafe { self.driver.launch("conv", &name, Grid::elements(total), &args![c, cs.ptr, o])? };
        }
        Ok(boxed(out))
    }
}
