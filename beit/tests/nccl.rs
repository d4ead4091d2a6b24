//! The Runner in a one-member NCCL group on cuda:0 against a lone run on cuda:0
//! (`--features cuda`; part of the GPU check): pretraining, and segmentation whose
//! BatchNorm sums its statistics through NCCL (SyncBN), give the lone run's losses,
//! gradient norms and weights. Each test prints `SKIPPED` and passes when no GPU can be
//! opened or NCCL cannot be loaded.
#![cfg(feature = "cuda")]

use beit::engine::collective::{Collective, Single};
use beit::engine::Device;
use beit::train::*;
use beit_backend_cuda::Nccl;
use common::group::*;
use std::sync::Arc;

mod common;

/// cuda:0 and a one-member NCCL group over [`Single`] on it, or `None` after saying why
/// the test is skipped.
fn group(test: &str) -> Option<(Device, Arc<dyn Collective>)> {
    let dev = Nccl::available(0).map_err(|why| eprintln!("SKIPPED {test} on cuda:0 ({why})")).ok()?;
    let nccl = Nccl::over(Arc::new(Single), &dev).expect("a one-member NCCL group");
    Some((dev, Arc::new(nccl)))
}

#[test]
fn pretraining_in_a_one_member_nccl_group_is_the_lone_run() {
    let Some((dev, nccl)) = group("pretraining_in_a_one_member_nccl_group_is_the_lone_run") else { return };
    let (alone_dir, group_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (want, alone) = pretrain_run(alone_dir.path(), &dev, &RunControl::default());
    let (got, member) = pretrain_run(group_dir.path(), &dev, &RunControl { group: Some(nccl), ..RunControl::default() });
    assert!(got.history.iter().all(|m| m.parts.contains_key("all_reduce_s")), "the buckets went through NCCL");
    assert_same_history(&got, &want, "one NCCL member");
    assert_same_weights(&member, &alone, "one NCCL member");
}

#[test]
fn segmentation_in_a_one_member_nccl_group_is_the_lone_run() {
    let Some((dev, nccl)) = group("segmentation_in_a_one_member_nccl_group_is_the_lone_run") else { return };
    let (want, alone) = seg_run(&RunControl::default(), &dev);
    let (got, member) = seg_run(&RunControl { group: Some(nccl), ..RunControl::default() }, &dev);
    assert_same_history(&got, &want, "one NCCL member, segmentation");
    assert_same_weights(&seg_compared(&member), &seg_compared(&alone), "one NCCL member, segmentation");
}
