//! Data-parallel training: members of a group, each on its shard of every batch, give the
//! losses and weights of one process on the whole batch. The group is threads of this
//! process ([`LocalGroup`]), or two processes under `mpirun` in
//! `two_mpi_ranks_match_one_process`: over shared memory, over TCP, and (as root) on two
//! hosts made of network namespaces (`cargo test -p beit --test distributed --features
//! beit-mpi/mpi`; skipped with a message without the feature, `mpirun` or root), for
//! pretraining and for segmentation, whose BatchNorm is synchronised over the group.

use beit::engine::collective::{Collective, LocalGroup};
use beit::engine::nn::Module;
use beit::train::*;
use common::group::*;
use common::{weights, PatchTokenizer, digits_data};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod common;

/// Each member of a group of `n` threads runs `member(rank, group)`; their results by rank.
fn in_group<T: Send>(n: usize, member: impl Fn(usize, Arc<dyn Collective>) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = LocalGroup::new(n).into_iter().enumerate().map(|(rank, g)| {
            let member = &member;
            s.spawn(move || member(rank, Arc::new(g)))
        }).collect();
        handles.into_iter().map(|h| h.join().expect("member thread")).collect()
    })
}

#[test]
fn two_members_on_half_batches_match_one_process_on_the_whole() {
    let device = beit_backend_cpu::cpu();
    let alone_dir = tempfile::tempdir().unwrap();
    let (want, alone) = pretrain_run(alone_dir.path(), &device, &RunControl::default());
    assert_eq!(want.steps, 6);

    let group_dir = tempfile::tempdir().unwrap();
    let cfg = config(group_dir.path(), 4);
    let members = in_group(2, |rank, group| {
        // Different initial weights: member 0's are broadcast.
        let m = model(&cfg, &beit_backend_cpu::cpu(), if rank == 0 { 3 } else { 99 });
        let s = run(&m, &cfg, &RunControl { group: Some(group), ..RunControl::default() }).unwrap();
        (s, weights(&m))
    });
    for (rank, (s, w)) in members.iter().enumerate() {
        assert_same_history(s, &want, &format!("member {rank}"));
        assert_same_weights(w, &alone, &format!("member {rank}"));
    }
    assert_eq!(members[0].1, members[1].1, "the members' weights are identical");
    // Member 0 alone wrote: the same checkpoints as the lone run, one metrics line a step.
    assert_eq!(list_checkpoints(&group_dir.path().join("ckpt")).unwrap().len(), list_checkpoints(&alone_dir.path().join("ckpt")).unwrap().len());
    assert!(members[0].0.checkpoint.is_some() && members[1].0.checkpoint.is_none());
    assert_eq!(read_metrics(&group_dir.path().join("metrics.jsonl")).unwrap().0.len(), 6);
}

#[test]
fn a_group_of_one_goes_through_the_collectives_and_matches_a_process_alone() {
    let device = beit_backend_cpu::cpu();
    let dir = tempfile::tempdir().unwrap();
    let (want, alone) = pretrain_run(dir.path(), &device, &RunControl::default());
    let one = in_group(1, |_, group| pretrain_run(dir.path(), &beit_backend_cpu::cpu(), &RunControl { group: Some(group), ..RunControl::default() }));
    assert_same_history(&one[0].0, &want, "a group of one");
    assert!(one[0].0.history.iter().all(|m| m.parts.contains_key("all_reduce_s")), "the buckets were reduced");
    assert_same_weights(&one[0].1, &alone, "a group of one");
}

#[test]
fn a_group_checkpoint_resumes_alone_and_a_lone_one_in_a_group() {
    let device = beit_backend_cpu::cpu();
    let straight_dir = tempfile::tempdir().unwrap();
    let (want, straight) = pretrain_run(straight_dir.path(), &device, &RunControl::default());

    // Steps 0..2 in a group of 2, 2..4 alone, 4..6 in a group of 4 (one image each).
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 4);
    let latest = || load_checkpoint(list_checkpoints(&dir.path().join("ckpt")).unwrap().last().unwrap(), &beit_backend_cpu::cpu()).unwrap();
    let first = in_group(2, |_, group| run(&model(&cfg, &beit_backend_cpu::cpu(), 3), &cfg, &RunControl { group: Some(group), stop_at_step: Some(2), ..RunControl::default() }).unwrap());
    let resumed = model(&cfg, &device, 3);
    let second = run(&resumed, &cfg, &RunControl { resume: Some(latest()), stop_at_step: Some(4), ..RunControl::default() }).unwrap();
    let third = in_group(4, |_, group| {
        let m = model(&cfg, &beit_backend_cpu::cpu(), 3);
        let s = run(&m, &cfg, &RunControl { group: Some(group), resume: Some(latest()), ..RunControl::default() }).unwrap();
        (s, weights(&m))
    });
    let history = [&first[0].history[..], &second.history[..], &third[0].0.history[..]].concat();
    assert_same_history(&Summary { history, ..Summary::default() }, &want, "2, 1, then 4 members");
    assert_same_weights(&third[3].1, &straight, "2, 1, then 4 members");
}

#[test]
fn a_batch_the_group_cannot_split_is_refused_by_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3);
    let errors = in_group(2, |_, group| run(&model(&cfg, &beit_backend_cpu::cpu(), 3), &cfg, &RunControl { group: Some(group), ..RunControl::default() }).unwrap_err().to_string());
    for e in errors {
        assert!(e.contains("`batch_size` 3") && e.contains("2 members"), "{e}");
    }
}

#[test]
fn an_error_on_one_member_ends_the_group_instead_of_hanging_it() {
    let dir = tempfile::tempdir().unwrap();
    let errors = in_group(2, |rank, group| {
        let mut cfg = config(dir.path(), 4);
        if rank == 0 {
            // Member 0 (the writer) cannot write its metrics after the first step.
            cfg.train.files.metrics = Some(dir.path().join("missing").join("metrics.jsonl"));
        }
        run(&model(&cfg, &beit_backend_cpu::cpu(), 3), &cfg, &RunControl { group: Some(group), ..RunControl::default() }).unwrap_err().to_string()
    });
    assert!(errors[0].contains("metrics.jsonl"), "{errors:?}");
    assert!(errors[1].contains("aborted") && errors[1].contains("member 0"), "{errors:?}");
}

/// The generated shapes with every label of the even samples ignored.
struct HalfIgnored(beit::data::Shapes);

impl beit::data::SegDataset for HalfIgnored {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn size(&self) -> usize {
        self.0.size()
    }
    fn sample(&self, i: usize) -> beit::engine::Result<beit::data::SegSample> {
        let mut s = self.0.sample(i)?;
        if i.is_multiple_of(2) {
            s.labels.fill(255);
        }
        Ok(s)
    }
}

/// BatchNorm synchronised over the group (SyncBN): 2 members on half batches train as one
/// process on the whole, running statistics included. Each member's PSP branch at scale 1
/// sees one value per channel: without the group's statistics that BatchNorm would fail.
#[test]
fn segmentation_members_normalise_by_the_whole_batch() {
    let (want, alone) = seg_run(&RunControl::default(), &beit_backend_cpu::cpu());
    assert_eq!(want.steps, 8);
    assert!(alone.iter().any(|(name, _)| name.ends_with("bn.running_var")));
    for (rank, (s, w)) in in_group(2, |_, group| seg_run(&RunControl { group: Some(group), ..RunControl::default() }, &beit_backend_cpu::cpu())).into_iter().enumerate() {
        assert_same_history(&s, &want, &format!("member {rank}"));
        assert_same_weights(&seg_compared(&w), &seg_compared(&alone), &format!("member {rank}"));
    }
}

/// Evaluation in a group: each member scores its part of a set that does not divide (13
/// digits: 6 and 7; 5 shapes: 2 and 3), and every member gets the whole set's metrics.
#[test]
fn members_evaluate_their_parts_and_share_the_whole_sets_metrics() {
    let device = beit_backend_cpu::cpu();
    let digits = beit::data::Digits::load().unwrap();
    let test = ClassifyData::digits(&digits, &(1000..1013).collect::<Vec<_>>(), 8, &device).unwrap();
    let mim = model(&config(Path::new("/nonexistent"), 4), &device, 3);
    let classifier = classifier_from_pretrained(mim.state_dict(), mim.beit.config(), test.classes(), 0.0, 1, &device).unwrap();
    let want = evaluate(&classifier, &test, 4).unwrap();
    let shapes = beit::data::Shapes::new(5, 32, 2).unwrap();
    let segmenter = beit::BeitForSemanticSegmentation::new(&seg_config(beit::SegHead::Uper), &device, 0).unwrap();
    let seg_want = beit::segmentation::evaluate(&segmenter, &shapes, 2, &device).unwrap();
    let got = in_group(2, |_, group| {
        let device = beit_backend_cpu::cpu();
        let m = evaluate_in(&classifier, &test, 4, &group).unwrap();
        (m, beit::segmentation::evaluate_in(&segmenter, &shapes, 2, &device, &group).unwrap())
    });
    for (rank, (m, seg)) in got.into_iter().enumerate() {
        assert_eq!((m.samples, m.top1, m.top5, &m.confusion), (13, want.top1, want.top5, &want.confusion), "member {rank}");
        assert!((m.loss - want.loss).abs() <= 1e-6 * want.loss, "member {rank}: loss {} vs {}", m.loss, want.loss);
        assert_eq!((seg.per_class_iou(), seg.pixel_accuracy()), (seg_want.per_class_iou(), seg_want.pixel_accuracy()), "member {rank}");
    }
}

/// The same on an image folder with a file that is not an image (8 files, parts of 4):
/// each member reads its part of the loader's order, and the group scores the 7 readable
/// images once each.
#[test]
fn members_evaluate_their_parts_of_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    for (class, n, blue) in [("a", 4, 40u8), ("b", 3, 200)] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_fn(12, 10, |x, y| image::Rgb([(x * 20 + i * 30) as u8, (y * 25) as u8, blue]));
            img.save(dir.path().join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    std::fs::write(dir.path().join("b/broken.png"), b"not a png").unwrap();
    let folder = beit::data::ImageFolder::labelled(dir.path()).unwrap();
    assert_eq!(folder.len(), 8);
    let data = ClassifyData::Folder { folder, size: 8 };
    let device = beit_backend_cpu::cpu();
    let mim = model(&config(Path::new("/nonexistent"), 4), &device, 3);
    let classifier = classifier_from_pretrained(mim.state_dict(), mim.beit.config(), data.classes(), 0.0, 1, &device).unwrap();
    let want = evaluate(&classifier, &data, 3).unwrap();
    assert_eq!(want.samples, 7);
    for (rank, m) in in_group(2, |_, group| evaluate_in(&classifier, &data, 3, &group).unwrap()).into_iter().enumerate() {
        assert_eq!((m.samples, m.top1, &m.confusion), (7, want.top1, &want.confusion), "member {rank}");
        assert!((m.loss - want.loss).abs() <= 1e-6 * want.loss, "member {rank}: loss {} vs {}", m.loss, want.loss);
    }
}

/// The dVAE tokenizer trained by 2 members on half batches (the Gumbel noise of their
/// samples, the codebook-usage term of the whole batch) is the dVAE of one process.
#[test]
fn dvae_members_train_as_one_process() {
    use beit::tokenizer::{train_dvae, Dvae, DvaeConfig, DvaeTrainConfig};
    let digits = beit::data::Digits::load().unwrap();
    let (train, _) = digits.split();
    let run = |control: &RunControl| {
        let dev = beit_backend_cpu::cpu();
        let config = DvaeConfig { hidden: 8, vocab_size: 16, ..DvaeConfig::digits() };
        let model = Dvae::new(&beit::engine::nn::VarBuilder::new(&dev, beit::engine::DType::F32, 1), config).unwrap();
        let cfg = DvaeTrainConfig { steps: 6, batch: 8, lr: 4e-3, ..DvaeTrainConfig::default() };
        let batch = |s: &TrainState| digits.tokenizer_batch(&train[s.step as usize * 8..][..8], 16, &dev);
        let s = train_dvae(&model, &cfg, &RunFiles::default(), train.len(), batch, control, &mut Quiet).unwrap();
        (s, weights(&model))
    };
    let (want, alone) = run(&RunControl::default());
    for (rank, (s, w)) in in_group(2, |_, group| run(&RunControl { group: Some(group), ..RunControl::default() })).into_iter().enumerate() {
        assert_same_history(&s, &want, &format!("member {rank}"));
        for (g, w) in s.history.iter().zip(&want.history) {
            let (gu, wu) = (g.parts["usage"], w.parts["usage"]);
            assert!((gu - wu).abs() <= TOL * wu.abs().max(1e-3), "member {rank}: step {} usage {gu} vs {wu}", g.step);
        }
        assert_same_weights(&w, &alone, &format!("member {rank}"));
    }
}

#[test]
fn a_member_whose_shard_is_all_ignored_pixels_adds_nothing() {
    // SETR-PUP: BatchNorm over whole maps.
    let config = seg_config(beit::SegHead::SetrPup);
    let data = HalfIgnored(beit::data::Shapes::new(8, 32, 1).unwrap());
    let train = TrainConfig { epochs: 2, batch_size: 2, ..TrainConfig::default() };
    let cfg = FinetuneConfig { train, layer_decay: 0.9, label_smoothing: 0.0 };
    let train = |control: &RunControl| {
        let model = beit::BeitForSemanticSegmentation::new(&config, &beit_backend_cpu::cpu(), 0).unwrap();
        beit::segmentation::finetune(&model, &data, None, &cfg, control, &mut Quiet).unwrap()
    };
    // Alone, only the batches of two ignored samples have no loss (and are skipped).
    let alone = train(&RunControl::default());
    let skipped: Vec<u64> = alone.history.iter().filter(|m| m.skipped).map(|m| m.step).collect();
    assert!(!skipped.is_empty() && skipped.len() < 6, "the shuffle pairs samples both ways: {skipped:?}");
    // In a group, a batch of one ignored and one labelled sample leaves a member without
    // a labelled pixel: it must add nothing, not make the step non-finite.
    for s in in_group(2, |_, group| train(&RunControl { group: Some(group), ..RunControl::default() })) {
        let group_skipped: Vec<u64> = s.history.iter().filter(|m| m.skipped).map(|m| m.step).collect();
        assert_eq!((s.steps, &group_skipped), (8, &skipped));
        assert!(s.history.iter().all(|m| m.skipped || m.loss.is_finite()), "{:?}", s.history);
    }
}

/// Raises its flag after step `after`, as Ctrl-C would.
struct StopAfter {
    after: u64,
    flag: Arc<AtomicBool>,
}

impl Observer for StopAfter {
    fn step(&mut self, m: &StepMetrics, _total: u64) {
        if m.step == self.after {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_stop_raised_on_one_member_stops_the_whole_group_at_the_same_step() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 4);
    let stopped = in_group(2, |rank, group| {
        let device = beit_backend_cpu::cpu();
        let flag = Arc::new(AtomicBool::new(false));
        let control = RunControl { group: Some(group), stop: Some(flag.clone()), ..RunControl::default() };
        // Only member 1 is interrupted, after step 1.
        let mut obs = StopAfter { after: if rank == 1 { 1 } else { u64::MAX }, flag };
        let s = pretrain(&model(&cfg, &device, 3), &PatchTokenizer::new(8, &device), &digits_data(12, &device), &cfg, &control, &mut obs).unwrap();
        (s.steps, s.interrupted)
    });
    assert_eq!(stopped, vec![(2, true), (2, true)]);
    let ck = load_checkpoint(list_checkpoints(&dir.path().join("ckpt")).unwrap().last().unwrap(), &beit_backend_cpu::cpu()).unwrap();
    assert_eq!(ck.state.step, 2, "member 0 saved the step the group stopped at");
}

/// Set in the processes `mpirun` starts: the folder they write their results to.
const CHILD: &str = "BEIT_DISTRIBUTED_CHILD";

#[test]
fn two_mpi_ranks_match_one_process() {
    if let Some(dir) = std::env::var_os(CHILD) {
        return mpi_rank(Path::new(&dir));
    }
    if !beit_mpi::LINKED {
        eprintln!("skipping: beit-mpi built without MPI (run `cargo test -p beit --test distributed --features beit-mpi/mpi`)");
        return;
    }
    let Ok(version) = std::process::Command::new("mpirun").arg("--version").output() else {
        eprintln!("skipping: no `mpirun` on PATH (install Open MPI: apt-get install openmpi-bin libopenmpi-dev)");
        return;
    };
    let open_mpi = String::from_utf8_lossy(&version.stdout).contains("Open MPI");
    let alone_dir = tempfile::tempdir().unwrap();
    let (want, alone) = pretrain_run(alone_dir.path(), &beit_backend_cpu::cpu(), &RunControl::default());
    let (seg_want, seg_alone) = seg_run(&RunControl::default(), &beit_backend_cpu::cpu());
    // Shared memory; with Open MPI, TCP over loopback, and two hosts (network namespaces
    // of this machine, as root: `scripts/mpirun-two-hosts.sh`) talking TCP through a switch.
    let tcp = ["--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo"];
    let two_hosts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/mpirun-two-hosts.sh");
    let mut launches = vec![("shared memory", std::process::Command::new("mpirun"))];
    if open_mpi {
        let mut loopback = std::process::Command::new("mpirun");
        loopback.args(tcp);
        launches.push(("TCP on loopback", loopback));
        launches.push(("two hosts", std::process::Command::new(two_hosts)));
    }
    for (what, mut mpirun) in launches {
        let dir = tempfile::tempdir().unwrap();
        if open_mpi {
            mpirun.args(["--allow-run-as-root", "-x", CHILD]);
        }
        // The script starts one rank on each host.
        if what != "two hosts" {
            mpirun.args(if open_mpi { &["--oversubscribe", "-np", "2"][..] } else { &["-np", "2"] });
        }
        let out = mpirun
            .arg(std::env::current_exe().unwrap())
            .args(["two_mpi_ranks_match_one_process", "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD, dir.path())
            .output()
            .unwrap();
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.code() == Some(77) {
            eprintln!("skipping {what}: {}", log.trim());
            continue;
        }
        assert!(out.status.success(), "mpirun, {what}, failed ({}):\n{log}", out.status);
        if what == "two hosts" {
            // The gradients of 6 steps went through the switch: more than the weights' bytes.
            let sent: u64 = log.split("beit-a sent ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).expect("the bytes line");
            let weight_bytes = 4 * alone.iter().map(|(_, w)| w.len() as u64).sum::<u64>();
            assert!(sent > weight_bytes, "{what}: only {sent} bytes sent, {weight_bytes} of weights:\n{log}");
        }
        let what = format!("2 MPI ranks, {what}");
        let (history, _) = read_metrics(&dir.path().join("metrics.jsonl")).unwrap();
        assert_same_history(&Summary { history, ..Summary::default() }, &want, &what);
        for rank in 0..2 {
            let text = std::fs::read_to_string(dir.path().join(format!("weights-{rank}.json"))).unwrap();
            let got: Vec<(String, Vec<f32>)> = serde_json::from_str(&text).unwrap();
            assert_same_weights(&got, &alone, &format!("{what}, rank {rank}"));
            let text = std::fs::read_to_string(dir.path().join(format!("seg-{rank}.json"))).unwrap();
            let (history, got): (Vec<StepMetrics>, Vec<(String, Vec<f32>)>) = serde_json::from_str(&text).unwrap();
            let what = format!("{what}, rank {rank}, segmentation");
            assert_same_history(&Summary { history, ..Summary::default() }, &seg_want, &what);
            assert_same_weights(&seg_compared(&got), &seg_compared(&seg_alone), &what);
        }
    }
}

/// One rank of [`two_mpi_ranks_match_one_process`]: pretrain in the world group (member 0
/// writes the metrics) and write this rank's final weights, then fine-tune segmentation
/// (SyncBN) and write its history and weights.
fn mpi_rank(dir: &Path) {
    let launch = beit_mpi::launcher().unwrap().expect("started by mpirun");
    let group = Arc::new(beit_mpi::Mpi::init().unwrap());
    assert_eq!((group.rank(), group.world_size()), (launch.rank, 2));
    let cfg = config(dir, 4);
    let m = model(&cfg, &beit_backend_cpu::cpu(), 3 + launch.rank as u64);
    let control = RunControl { group: Some(group), ..RunControl::default() };
    let s = run(&m, &cfg, &control).unwrap();
    assert_eq!(s.steps, 6);
    std::fs::write(dir.join(format!("weights-{}.json", launch.rank)), serde_json::to_string(&weights(&m)).unwrap()).unwrap();
    let (s, w) = seg_run(&control, &beit_backend_cpu::cpu());
    std::fs::write(dir.join(format!("seg-{}.json", launch.rank)), serde_json::to_string(&(s.history, w)).unwrap()).unwrap();
}
