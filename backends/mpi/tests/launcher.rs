//! `launcher()` reads the process environment: one test, so that nothing else in this
//! binary sees the variables it sets.

use beit_mpi::{launcher, Launch};

const VARS: [&str; 9] = [
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_RANK",
    "PMI_SIZE",
    "PMIX_RANK",
    "SLURM_NTASKS",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MPI_LOCALRANKID",
    "SLURM_LOCALID",
];

#[test]
fn launcher_reads_the_environment() {
    let saved: Vec<_> = VARS.iter().map(|v| (v, std::env::var_os(v))).collect();
    VARS.iter().for_each(|v| std::env::remove_var(v));

    assert_eq!(launcher().unwrap(), None);
    std::env::set_var("PMI_RANK", "1");
    std::env::set_var("PMI_SIZE", "3");
    assert_eq!(launcher().unwrap(), Some(Launch { rank: 1, size: 3, var: "PMI_RANK", local_rank: None }));
    // Open MPI's variables win over PMI's.
    std::env::set_var("OMPI_COMM_WORLD_RANK", "0");
    std::env::set_var("OMPI_COMM_WORLD_SIZE", "1");
    std::env::set_var("OMPI_COMM_WORLD_LOCAL_RANK", "0");
    assert_eq!(launcher().unwrap(), Some(Launch { rank: 0, size: 1, var: "OMPI_COMM_WORLD_RANK", local_rank: Some(0) }));
    std::env::set_var("OMPI_COMM_WORLD_SIZE", "two");
    let err = launcher().unwrap_err().to_string();
    assert!(err.contains(r#"OMPI_COMM_WORLD_SIZE="two""#), "{err}");
    std::env::remove_var("OMPI_COMM_WORLD_SIZE");
    let err = launcher().unwrap_err().to_string();
    assert!(err.contains("OMPI_COMM_WORLD_RANK=0 is set but OMPI_COMM_WORLD_SIZE is not"), "{err}");

    for (var, value) in saved {
        match value {
            Some(value) => std::env::set_var(var, value),
            None => std::env::remove_var(var),
        }
    }
}
