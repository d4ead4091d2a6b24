//! [`Mpi`] in a build without the `mpi` feature: a type with no values, so that callers
//! compile the same way with or without MPI, and an `init` that says how to get it.

use beit_engine::collective::Collective;
use beit_engine::{Error, Result, Tensor};
use std::convert::Infallible;

/// The group of every process of an MPI run. This build has no MPI (the `mpi` feature is
/// off): [`Mpi::init`] always fails, so no value of this type exists.
#[derive(Debug)]
pub struct Mpi {
    never: Infallible,
}

impl Mpi {
    /// Fails: this build has no MPI. Rebuild with `--features mpi`.
    pub fn init() -> Result<Mpi> {
        let msg = "this build has no MPI: rebuild with `--features mpi` (needs Open MPI or MPICH and libclang)";
        Err(Error::invalid("Mpi::init", msg))
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        match self.never {}
    }
    fn world_size(&self) -> usize {
        match self.never {}
    }
    fn all_reduce_sum(&self, _t: &Tensor) -> Result<Tensor> {
        match self.never {}
    }
    fn broadcast(&self, _t: &Tensor, _root: usize) -> Result<Tensor> {
        match self.never {}
    }
    fn barrier(&self) -> Result<()> {
        match self.never {}
    }
    fn abort(&self, _why: &str) {
        match self.never {}
    }
}
