//! Options of the training commands: [`RunArgs`] (checkpoints, metrics, resume,
//! interruption, progress, device, the `mpirun` group) for every trainer, and [`TrainArgs`] (the recipe: a
//! config file, then named flags and `--set key=value` on top) for `beit pretrain` and
//! `beit finetune`.

use crate::progress::Progress;
use beit::engine::{Device, Error, Result};
use beit::train::{apply_overrides, load_checkpoint, load_config, Checkpoint, RunControl, RunFiles};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Recipe and run options.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Recipe file (.json or .toml); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Passes over the data.
    #[arg(long)]
    epochs: Option<u64>,
    /// Samples per step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate per 256 samples (peak = base_lr · batch / 256).
    #[arg(long)]
    base_lr: Option<f64>,
    /// Linear warmup in epochs.
    #[arg(long)]
    warmup_epochs: Option<f64>,
    /// Seed of every random draw.
    #[arg(long)]
    seed: Option<u64>,
    /// Any other recipe setting, as KEY=VALUE (repeatable; e.g. --set weight_decay=0.1).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// What every training command takes: where it writes, resume, interruption, progress.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Folder of checkpoints.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Checkpoint every N steps (0: at the end and on Ctrl-C only).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Append metrics to this JSON Lines file.
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Draw the loss (and evaluation) curves into this PNG at the end.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Continue from a checkpoint file, or the newest in a folder.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Stop (with a checkpoint) at this step.
    #[arg(long)]
    stop_at_step: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Device: cpu, cuda:N, or cuda (under mpirun: the GPU of the process's rank on its
    /// machine, one process per GPU).
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl TrainArgs {
    /// The recipe: defaults, then the file, then the flags.
    pub fn recipe<T: Serialize + DeserializeOwned + Default>(&self) -> Result<T> {
        let base: T = match &self.config {
            Some(path) => load_config(path)?,
            None => T::default(),
        };
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut named = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                pairs.push((key.to_string(), v));
            }
        };
        named("epochs", self.epochs.map(|v| v.to_string()));
        named("batch_size", self.batch_size.map(|v| v.to_string()));
        named("base_lr", self.base_lr.map(|v| v.to_string()));
        named("warmup_epochs", self.warmup_epochs.map(|v| v.to_string()));
        named("seed", self.seed.map(|v| v.to_string()));
        let run = &self.run;
        named("checkpoint_every", run.checkpoint_every.map(|v| v.to_string()));
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| serde_json::to_string(p).unwrap_or_default());
        named("checkpoint_dir", path(&run.checkpoint_dir));
        named("metrics", path(&run.metrics));
        named("plot", path(&run.plot));
        for kv in &self.set {
            let (k, v) = kv.split_once('=').ok_or_else(|| beit::engine::Error::invalid("--set", format!("`{kv}` is not KEY=VALUE")))?;
            pairs.push((k.trim().to_string(), v.trim().to_string()));
        }
        apply_overrides(&base, &pairs)
    }
}

impl RunArgs {
    /// The files of a run whose recipe has no file (the dVAE's): the flags, else defaults.
    pub fn files(&self) -> RunFiles {
        let d = RunFiles::default();
        RunFiles {
            checkpoint_dir: self.checkpoint_dir.clone(),
            checkpoint_every: self.checkpoint_every.unwrap_or(d.checkpoint_every),
            metrics: self.metrics.clone(),
            plot: self.plot.clone(),
            ..d
        }
    }

    /// The device `--device` names (see [`device_spec`]).
    pub fn open_device(&self) -> Result<Device> {
        beit::open_device(&device_spec(&self.device, beit_mpi::launcher()?)?)
    }

    /// The checkpoint to resume from, if any.
    pub fn checkpoint(&self, device: &Device) -> Result<Option<Checkpoint>> {
        self.resume.as_ref().map(|p| load_checkpoint(p, device)).transpose()
    }

    /// Run control with a Ctrl-C handler that asks the run to checkpoint and stop, in the
    /// data-parallel group of the processes `mpirun` started ([`beit_mpi::launched_group`];
    /// NCCL over it on a GPU `device`, [`beit::device_group`]).
    pub fn control(&self, resume: Option<Checkpoint>, device: &Device) -> Result<RunControl> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
            eprintln!("warning: cannot catch Ctrl-C ({e}); an interrupted run will not checkpoint");
        }
        Ok(RunControl { resume, stop: Some(stop), stop_at_step: self.stop_at_step, group: beit_mpi::launched_group()?.map(|g| beit::device_group(Arc::new(g), device)).transpose()? })
    }

    /// The progress display: none on the group's other members than 0.
    pub fn progress(&self) -> Progress {
        Progress::new(self.quiet || !is_main_process())
    }
}

/// The device `spec` names for a process of `launch`: `cuda` (or `gpu`) without an ordinal
/// is the GPU of its rank on its machine, as one process per GPU wants; alone, GPU 0.
fn device_spec(spec: &str, launch: Option<beit_mpi::Launch>) -> Result<String> {
    let Some(launch) = launch.filter(|_| matches!(spec.trim().to_ascii_lowercase().as_str(), "cuda" | "gpu")) else { return Ok(spec.to_string()) };
    match launch.local_rank {
        Some(local) => Ok(format!("cuda:{local}")),
        None => Err(Error::invalid("--device", format!("the launcher sets no rank on the machine for rank {} (OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID or SLURM_LOCALID): give `--device cuda:N`", launch.rank))),
    }
}

/// Whether this process prints and writes results: alone, or rank 0 of an MPI run.
pub fn is_main_process() -> bool {
    beit_mpi::launcher().ok().flatten().is_none_or(|l| l.rank == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use beit_mpi::Launch;

    #[test]
    fn cuda_without_an_ordinal_is_the_local_ranks_gpu_under_a_launcher() {
        let launch = |local_rank| Some(Launch { rank: 5, size: 8, var: "OMPI_COMM_WORLD_RANK", local_rank });
        assert_eq!(device_spec("cuda", launch(Some(1))).unwrap(), "cuda:1");
        assert_eq!(device_spec("GPU", launch(Some(3))).unwrap(), "cuda:3");
        assert_eq!(device_spec("cuda:2", launch(Some(1))).unwrap(), "cuda:2");
        assert_eq!(device_spec("cpu", launch(Some(1))).unwrap(), "cpu");
        assert_eq!(device_spec("cuda", None).unwrap(), "cuda");
        let err = device_spec("cuda", launch(None)).unwrap_err().to_string();
        assert!(err.contains("--device") && err.contains("rank 5") && err.contains("cuda:N"), "{err}");
    }
}
