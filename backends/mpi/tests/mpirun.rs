//! Two processes under `mpirun`: the test re-runs its own binary as both ranks (the
//! `BEIT_MPI_TEST_CHILD` variable selects that role) and checks their exit status.

use beit_backend_cpu::cpu;
use beit_engine::collective::Collective;
use beit_engine::{HostData, Tensor};
use beit_mpi::{launcher, Mpi};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TEST: &str = "two_ranks_under_mpirun";
const CHILD: &str = "BEIT_MPI_TEST_CHILD";
/// Long enough for two processes to start on a loaded machine; a hang is killed after it.
const TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn two_ranks_under_mpirun() {
    if std::env::var_os(CHILD).is_some() {
        if let Err(msg) = child() {
            eprintln!("rank failed: {msg}");
            // Exit without finalising MPI, so that mpirun stops the other rank.
            std::process::exit(1);
        }
        return;
    }
    if !cfg!(feature = "mpi") {
        eprintln!("skipping: beit-mpi built without the `mpi` feature (cargo test -p beit-mpi --features mpi)");
        return;
    }
    let Some(mpirun) = on_path("mpirun") else {
        eprintln!("skipping: no `mpirun` on PATH (install Open MPI or MPICH)");
        return;
    };
    let open_mpi = Command::new(&mpirun).arg("--version").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("Open MPI"));
    let mut cmd = Command::new(&mpirun);
    if open_mpi {
        // Root in containers; more ranks than cores on small runners; pass the role on.
        cmd.args(["--allow-run-as-root", "--oversubscribe", "-x", CHILD]);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    cmd.args(["-np", "2"]).arg(exe).args([TEST, "--exact", "--nocapture", "--test-threads", "1"]);
    let (ok, output) = run(cmd.env(CHILD, "1"));
    println!("{output}");
    assert!(ok, "mpirun failed:\n{output}");
}

/// One rank's checks.
fn child() -> Result<(), String> {
    let launch = launcher().map_err(|e| e.to_string())?.ok_or("no launcher variables under mpirun")?;
    let group = Mpi::init().map_err(|e| e.to_string())?;
    let (rank, size) = (group.rank(), group.world_size());
    check(size == 2 && rank < 2, format!("rank {rank} of {size}"))?;
    check(launch.rank == rank && launch.size == size, format!("launcher {launch:?} vs MPI rank {rank} of {size}"))?;
    let dev = cpu();
    let tensor = |data: HostData| Tensor::from_host_owned(data, &[3], &dev).map_err(|e| e.to_string());
    let host = |t: Tensor| t.to_host().map_err(|e| e.to_string());
    let r = (rank + 1) as f32;

    let sum = |data| group.all_reduce_sum(&tensor(data)?).map_err(|e| e.to_string()).and_then(host);
    check_eq(sum(HostData::F32(vec![r, 2.0 * r, 0.5]))?, HostData::F32(vec![3.0, 6.0, 1.0]))?;
    check_eq(sum(HostData::F64(vec![r as f64, 2.0 * r as f64, 0.5]))?, HostData::F64(vec![3.0, 6.0, 1.0]))?;
    check_eq(sum(HostData::I64(vec![rank as i64 + 1, -7, 1 << 40]))?, HostData::I64(vec![3, -14, 1 << 41]))?;
    let bf16 = HostData::BF16(vec![half::bf16::from_f32(r); 3]);
    match group.all_reduce_sum(&tensor(bf16)?) {
        Err(e) => check(e.to_string().contains("cannot sum BF16"), format!("bf16 all_reduce error: {e}"))?,
        Ok(_) => return Err("bf16 all_reduce succeeded".into()),
    }
    // A shape mismatch is an error on every rank, not a hang.
    let uneven = Tensor::from_host_owned(HostData::F32(vec![1.0; rank + 1]), &[rank + 1], &dev).map_err(|e| e.to_string())?;
    match group.all_reduce_sum(&uneven) {
        Err(e) => check(e.to_string().contains("between 1 and 2 elements"), format!("mismatch error: {e}"))?,
        Ok(_) => return Err("all_reduce of mismatched shapes succeeded".into()),
    }

    let bcast = |data| group.broadcast(&tensor(data)?, 1).map_err(|e| e.to_string()).and_then(host);
    let k = rank as u8;
    check_eq(bcast(HostData::U8(vec![k, 10 + k, 20 + k]))?, HostData::U8(vec![1, 11, 21]))?;
    check_eq(bcast(HostData::I64(vec![-(k as i64), 1 << 50, 5]))?, HostData::I64(vec![-1, 1 << 50, 5]))?;
    let bits = |v: [f32; 3]| HostData::BF16(v.map(half::bf16::from_f32).to_vec());
    check_eq(bcast(bits([r, -r, 0.25]))?, bits([2.0, -2.0, 0.25]))?;
    check(group.broadcast(&tensor(HostData::U8(vec![0; 3]))?, 2).is_err(), "broadcast from root 2 of 2".into())?;
    group.barrier().map_err(|e| e.to_string())?;
    eprintln!("rank {rank} of {size}: all checks passed");
    Ok(())
}

fn check(ok: bool, what: String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what) }
}

fn check_eq(got: HostData, want: HostData) -> Result<(), String> {
    check(got == want, format!("got {got:?}, want {want:?}"))
}

/// The first `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Run `cmd` to completion (killing it after [`TIMEOUT`]): whether it succeeded, and its
/// stdout then stderr.
fn run(cmd: &mut Command) -> (bool, String) {
    let mut proc = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start mpirun");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(proc.stdout.take().expect("piped")));
    let err = drain(Box::new(proc.stderr.take().expect("piped")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = proc.try_wait().expect("wait for mpirun") {
            break Some(status);
        }
        if start.elapsed() > TIMEOUT {
            // SIGTERM first: mpirun passes it on to the ranks; SIGKILL would orphan them.
            let _ = Command::new("kill").arg(proc.id().to_string()).status();
            std::thread::sleep(Duration::from_secs(5));
            let _ = proc.kill();
            let _ = proc.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = format!("{}{}", out.join().unwrap_or_default(), err.join().unwrap_or_default());
    match status {
        Some(status) => (status.success(), format!("{text}(mpirun: {status})")),
        None => (false, format!("{text}(mpirun killed after {TIMEOUT:?})")),
    }
}
