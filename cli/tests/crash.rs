//! Crash safety of the training commands: a SIGKILL mid-run of `beit pretrain`, `beit
//! finetune --task segmentation` or `beit tokenizer train`, a kill while a checkpoint is
//! being written, and a checkpoint write that fails for want of space all lose nothing:
//! resuming gives bit-identical final weights, optimiser moments and step metrics to an
//! uninterrupted run.

mod common;

use beit::train::{list_checkpoints, load_checkpoint};
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One tiny training run (`command` and its options), a checkpoint after every step.
struct Run {
    command: Vec<String>,
    ck: PathBuf,
    metrics: PathBuf,
}

/// Pretraining on the built-in digits with the tokenizer in `tok`.
fn pretrain(tok: &Path) -> Vec<String> {
    let mut args = vec!["pretrain", "--digits", "--preset", "tiny", "--image-size", "16", "--patch-size", "4"];
    args.extend(["--tokenizer", s(tok), "--tokenizer-size", "4", "--epochs", "1", "--batch-size", "64"]);
    args.extend(["--set", "warmup_epochs=0.1", "--set", "mask_min_patches=4"]);
    args.into_iter().map(String::from).collect()
}

impl Run {
    fn new(root: &Path, name: &str, command: &[String]) -> Run {
        Run { command: command.to_vec(), ck: root.join(name), metrics: root.join(format!("{name}.jsonl")) }
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = self.command.clone();
        let files = ["--checkpoint-dir", s(&self.ck), "--checkpoint-every", "1", "--metrics", s(&self.metrics), "--quiet"];
        args.extend(files.iter().chain(extra).map(|a| a.to_string()));
        args
    }

    fn run(&self, extra: &[&str]) -> String {
        let args = self.args(extra);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Start the run in the background and SIGKILL it once `kill_when` holds for the
    /// checkpoint folder (polled as fast as possible), or let it finish. Returns whether it
    /// was killed.
    fn kill_when(&self, extra: &[&str], kill_when: impl Fn(&Path) -> bool) -> bool {
        let mut child = Command::new(env!("CARGO_BIN_EXE_beit")).args(self.args(extra)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if kill_when(&self.ck) {
                child.kill().unwrap();
                child.wait().unwrap();
                return true;
            }
            assert!(start.elapsed() < Duration::from_secs(300), "the run did not finish");
        }
    }

    /// Every tensor (model and optimiser) of the newest checkpoint, with its step.
    fn last(&self) -> (u64, Vec<(String, Vec<f64>)>) {
        let ck = load_checkpoint(&self.ck, &cpu()).unwrap();
        let mut tensors: Vec<(String, Vec<f64>)> = ck.model.names().map(|n| (format!("model.{n}"), ck.model.get(n).unwrap().to_vec_f64().unwrap())).collect();
        tensors.extend(ck.optim.names().map(|n| (n.to_string(), ck.optim.get(n).unwrap().to_vec_f64().unwrap())));
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        (ck.state.step, tensors)
    }

    /// The records of the metrics file without their timing (`samples_per_sec`).
    fn steps(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.metrics).unwrap();
        let mut out: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        out.iter_mut().for_each(|v| drop(v.as_object_mut().unwrap().remove("samples_per_sec")));
        out
    }

    /// Files in the checkpoint folder that are not complete checkpoints.
    fn leftovers(&self) -> Vec<String> {
        let complete = list_checkpoints(&self.ck).unwrap();
        let all = std::fs::read_dir(&self.ck).unwrap().map(|e| e.unwrap().path());
        all.filter(|p| !complete.contains(p)).map(|p| p.display().to_string()).collect()
    }

    /// Resume from the folder to the end; the result must equal `reference`'s.
    fn resume_matches(&self, reference: &Run, what: &str) {
        self.run(&["--resume", s(&self.ck)]);
        let ((step, got), (want_step, want)) = (self.last(), reference.last());
        assert_eq!(step, want_step, "{what}: final step");
        assert_eq!(got.len(), want.len(), "{what}: tensor count");
        for ((name, a), (_, b)) in got.iter().zip(&want) {
            assert!(a == b, "{what}: `{name}` differs from the uninterrupted run");
        }
        assert_eq!(self.steps(), reference.steps(), "{what}: step metrics");
        assert!(self.leftovers().is_empty(), "{what}: left behind {:?}", self.leftovers());
    }
}

/// A tiny tokenizer in `root`, and the pretraining run to the end every interrupted run
/// must reproduce.
fn uninterrupted(root: &Path) -> (Vec<String>, Run) {
    let tok = root.join("tok");
    tiny_tokenizer(&tok);
    let command = pretrain(&tok);
    let reference = Run::new(root, "ref", &command);
    reference.run(&[]);
    (command, reference)
}

fn checkpoints(dir: &Path) -> usize {
    list_checkpoints(dir).map_or(0, |c| c.len())
}

#[test]
fn killed_runs_resume_to_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let (command, reference) = uninterrupted(tmp.path());
    let (steps, _) = reference.last();
    assert!(steps >= 10, "one epoch has {steps} steps");
    assert_eq!(reference.steps().len() as u64, steps);

    // SIGKILL after the second checkpoint: whatever step it reached, nothing is lost.
    let killed = Run::new(tmp.path(), "kill", &command);
    assert!(killed.kill_when(&[], |dir| checkpoints(dir) >= 2), "killed before the end");
    let (at, _) = killed.last();
    assert!(at >= 2 && at < steps, "killed at step {at}");
    killed.resume_matches(&reference, "SIGKILL mid-run");

    // SIGKILL the moment a checkpoint file is being written (when the poll catches one),
    // then what a kill mid-write leaves, planted for certain: a torn temp file of the
    // next checkpoint and a stray writer's temp file.
    let torn = Run::new(tmp.path(), "torn", &command);
    let writing = |dir: &Path| std::fs::read_dir(dir).is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().contains(".tmp")));
    torn.kill_when(&[], |dir| checkpoints(dir) >= 1 && writing(dir));
    if checkpoints(&torn.ck) == 0 {
        torn.run(&["--stop-at-step", "1"]);
    }
    let newest = list_checkpoints(&torn.ck).unwrap().pop().unwrap();
    let bytes = std::fs::read(&newest).unwrap();
    let (at, _) = torn.last();
    std::fs::write(torn.ck.join(format!("checkpoint-{:08}.safetensors.tmp", at + 1)), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(torn.ck.join(".tmpAb12Cd"), &bytes[..100]).unwrap();
    assert_eq!(torn.last().0, at, "a torn write is never taken for a checkpoint");
    torn.resume_matches(&reference, "killed while writing a checkpoint");
}

#[test]
fn a_full_disk_keeps_the_previous_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (command, reference) = uninterrupted(tmp.path());
    let full = Run::new(tmp.path(), "full", &command);
    full.run(&["--stop-at-step", "2"]);
    let previous = list_checkpoints(&full.ck).unwrap().pop().unwrap();
    // No file may grow past half a checkpoint: the next checkpoint write fails (EFBIG, as
    // a full disk fails with ENOSPC) and the run stops with an error.
    let blocks = std::fs::metadata(&previous).unwrap().len() / 2 / 1024;
    let script = format!("trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\"");
    let args = full.args(&["--resume", s(&full.ck)]);
    let out = Command::new("bash").arg("-c").arg(&script).arg(env!("CARGO_BIN_EXE_beit")).args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    let intact = format!("the previous checkpoint {} is intact", previous.display());
    assert!(err.contains("checkpoint-00000003.safetensors") && err.contains("not written") && err.contains(&intact), "{err}");
    assert!(full.leftovers().is_empty(), "left behind {:?}", full.leftovers());
    assert_eq!(full.last().0, 2, "the previous checkpoint loads");
    full.resume_matches(&reference, "resumed after a full disk");
}

/// SIGKILL `command` after its second checkpoint, resume it, and compare with a run to the
/// end.
fn killed_and_resumed(root: &Path, command: &[String], what: &str) {
    let reference = Run::new(root, &format!("{what}-ref"), command);
    reference.run(&[]);
    let (steps, _) = reference.last();
    let killed = Run::new(root, &format!("{what}-kill"), command);
    assert!(killed.kill_when(&[], |dir| checkpoints(dir) >= 2), "{what}: killed before the end");
    let (at, _) = killed.last();
    assert!(at >= 2 && at < steps, "{what}: killed at step {at} of {steps}");
    killed.resume_matches(&reference, what);
}

#[test]
fn killed_segmentation_and_tokenizer_runs_resume_to_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    // A tiny pretrained encoder as a Hugging Face folder.
    let encoder = tmp.path().join("encoder");
    let config = beit::BeitConfig {
        architectures: vec!["BeitForMaskedImageModeling".into()],
        hidden_size: 16,
        num_hidden_layers: 4,
        num_attention_heads: 2,
        intermediate_size: 32,
        image_size: 16,
        patch_size: 4,
        use_mask_token: true,
        use_shared_relative_position_bias: true,
        ..beit::BeitConfig::default()
    };
    beit::Beit::new(&config, &cpu(), 0).unwrap().save_pretrained(&encoder).unwrap();
    let seg = ["finetune", "--task", "segmentation", "--model", s(&encoder), "--shapes", "64", "--epochs", "1", "--batch-size", "4", "--set", "drop_path=0.1"];
    killed_and_resumed(tmp.path(), &seg.map(String::from), "segmentation");
    let out = tmp.path().join("dvae");
    let dvae = ["tokenizer", "train", "--out", s(&out), "--steps", "16", "--batch", "8", "--hidden", "8", "--vocab", "32", "--json"];
    killed_and_resumed(tmp.path(), &dvae.map(String::from), "dvae");
}
