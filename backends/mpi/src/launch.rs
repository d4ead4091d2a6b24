//! Whether an MPI launcher (`mpirun`, `mpiexec`, `srun`) started this process, read from
//! the variables it sets, before (and without) initialising MPI.

use beit_engine::{Error, Result};

/// This process's place in a run started by an MPI launcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    /// This process's rank, `0..size`.
    pub rank: usize,
    /// Number of processes the launcher started (1 for `mpirun -np 1`).
    pub size: usize,
    /// The variable the rank was read from, e.g. `OMPI_COMM_WORLD_RANK`.
    pub var: &'static str,
    /// This process's rank among those the launcher started on its machine, when the
    /// launcher says (Open MPI, MPICH's Hydra, Slurm): which GPU of the machine is its.
    pub local_rank: Option<usize>,
}

/// The variables that give the rank on the machine, in the order tried.
const LOCAL: [&str; 3] = ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"];

/// (rank variable, size variable) pairs, in the order tried: Open MPI's `mpirun`; MPICH,
/// Intel MPI and other PMI launchers; PMIx launchers such as `srun --mpi=pmix`, which set
/// no size of their own (Slurm's task count stands in).
const PAIRS: [(&str, &str); 3] =
    [("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"), ("PMIX_RANK", "SLURM_NTASKS")];

/// The launch described by the environment: `None` when no launcher variable is set (the
/// process was started alone), `Some` even for a run of one process (the caller decides).
/// Errors name the variable and its value when a value is not a number, when a rank comes
/// without its size, or when the rank is not below the size.
pub fn launcher() -> Result<Option<Launch>> {
    launcher_from(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
}

/// [`launcher`] over the variables `var` returns.
fn launcher_from(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>> {
    for (rank_var, size_var) in PAIRS {
        let (rank, size) = match (var(rank_var), var(size_var)) {
            (None, _) => continue,
            (Some(rank), Some(size)) => (parse(rank_var, &rank)?, parse(size_var, &size)?),
            (Some(rank), None) => {
                let msg = format!("{rank_var}={rank} is set but {size_var} is not: cannot tell the number of processes");
                return Err(Error::invalid("MPI launcher", msg));
            }
        };
        if rank >= size {
            let msg = format!("{rank_var}={rank} is not below {size_var}={size}");
            return Err(Error::invalid("MPI launcher", msg));
        }
        let local_rank = LOCAL.iter().find_map(|&v| var(v).map(|value| parse(v, &value))).transpose()?;
        return Ok(Some(Launch { rank, size, var: rank_var, local_rank }));
    }
    Ok(None)
}

/// `value`, the value of `name`, as a count.
fn parse(name: &str, value: &str) -> Result<usize> {
    value.trim().parse().map_err(|_| Error::invalid("MPI launcher", format!("{name}={value:?} is not a non-negative integer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(vars: &[(&str, &str)]) -> Result<Option<Launch>> {
        launcher_from(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn reads_each_launcher() {
        assert_eq!(launch(&[]).unwrap(), None);
        let ompi = [("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "4"), ("PMI_RANK", "3"), ("PMI_SIZE", "9")];
        assert_eq!(launch(&ompi).unwrap(), Some(Launch { rank: 1, size: 4, var: "OMPI_COMM_WORLD_RANK", local_rank: None }));
        assert_eq!(launch(&ompi[2..]).unwrap(), Some(Launch { rank: 3, size: 9, var: "PMI_RANK", local_rank: None }));
        let pmix = [("PMIX_RANK", "0"), ("SLURM_NTASKS", "1"), ("SLURM_LOCALID", "0")];
        assert_eq!(launch(&pmix).unwrap(), Some(Launch { rank: 0, size: 1, var: "PMIX_RANK", local_rank: Some(0) }));
        let hydra = [("PMI_RANK", "5"), ("PMI_SIZE", "8"), ("MPI_LOCALRANKID", "1")];
        assert_eq!(launch(&hydra).unwrap().unwrap().local_rank, Some(1));
    }

    #[test]
    fn rejects_bad_values() {
        let err = |vars: &[(&str, &str)]| launch(vars).unwrap_err().to_string();
        assert_eq!(err(&[("PMI_RANK", "x"), ("PMI_SIZE", "2")]), r#"MPI launcher: PMI_RANK="x" is not a non-negative integer"#);
        assert_eq!(err(&[("PMI_RANK", "0"), ("PMI_SIZE", "")]), r#"MPI launcher: PMI_SIZE="" is not a non-negative integer"#);
        assert_eq!(err(&[("PMI_RANK", "2"), ("PMI_SIZE", "2")]), "MPI launcher: PMI_RANK=2 is not below PMI_SIZE=2");
        assert!(err(&[("PMIX_RANK", "0")]).contains("PMIX_RANK=0 is set but SLURM_NTASKS is not"));
        assert_eq!(err(&[("PMI_RANK", "0"), ("PMI_SIZE", "2"), ("SLURM_LOCALID", "-1")]), r#"MPI launcher: SLURM_LOCALID="-1" is not a non-negative integer"#);
    }
}
