//! MPI collectives for data-parallel training: [`Mpi`] implements
//! [`Collective`](beit_engine::collective::Collective) over `MPI_COMM_WORLD`, one member per
//! process started by `mpirun` (Open MPI or MPICH), and [`launcher`] tells whether this
//! process was started that way.
//!
//! The MPI library is linked only with the `mpi` feature (it needs Open MPI or MPICH and
//! libclang). Without it [`Mpi`] still exists, so callers compile the same either way, but
//! [`Mpi::init`] fails with a message saying how to rebuild:
//!
//! ```no_run
//! # fn main() -> beit_engine::Result<()> {
//! use beit_engine::collective::{Collective, Single};
//! use std::sync::Arc;
//!
//! let group: Arc<dyn Collective> = match beit_mpi::launched_group()? {
//!     Some(mpi) => Arc::new(mpi),
//!     None => Arc::new(Single),
//! };
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod launch;
#[cfg(feature = "mpi")]
mod mpi_group;
#[cfg(not(feature = "mpi"))]
mod no_mpi;

pub use launch::{launcher, Launch};
#[cfg(feature = "mpi")]
pub use mpi_group::Mpi;
#[cfg(not(feature = "mpi"))]
pub use no_mpi::Mpi;

/// Whether this build links MPI (the `mpi` feature); without it [`Mpi::init`] fails.
pub const LINKED: bool = cfg!(feature = "mpi");

/// The group of every process of this MPI run when a launcher started more than one
/// ([`launcher`]), else none (started alone, or as the only process). A build without the
/// `mpi` feature started by a launcher fails here, saying how to rebuild.
pub fn launched_group() -> beit_engine::Result<Option<Mpi>> {
    match launcher()? {
        Some(launch) if launch.size > 1 => Mpi::init().map(Some),
        _ => Ok(None),
    }
}
