//! Collectives without MPI: a group of threads ([`LocalGroup`]) sums in rank order,
//! broadcasts, and fails (instead of hanging) on mismatched calls and aborts;
//! [`GradBuckets`] gives every member the sum of the members' gradients, parameters only
//! some members reached included; `backward_with` reports each leaf once, with its final
//! gradient; a BatchNorm synchronised over the group is the whole batch's.

use beit_backend_cpu::cpu;
use std::sync::Arc;
use beit_engine::collective::{Collective, CommThread, GradBuckets, LocalGroup};
use beit_engine::nn::Param;
use beit_engine::{DType, Result, Tensor, TensorId};
use half::bf16;

/// Each of `n` threads runs `member(group)`; their results by rank.
fn in_group<T: Send>(n: usize, member: impl Fn(LocalGroup) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = LocalGroup::new(n).into_iter().map(|g| s.spawn(|| member(g))).collect();
        handles.into_iter().map(|h| h.join().expect("member thread")).collect()
    })
}

#[test]
fn a_local_group_sums_in_rank_order_and_broadcasts() -> Result<()> {
    let values = |rank: usize| [1.0 + rank as f32, 0.1 * rank as f32];
    let want = [0.0f32, values(0)[1] + values(1)[1] + values(2)[1]];
    let got = in_group(3, |g| -> Result<_> {
        let dev = cpu();
        let r = g.rank();
        let sum = g.all_reduce_sum(&Tensor::from_slice(&values(r), &[2], &dev)?)?.to_vec::<f32>()?;
        let ints = g.all_reduce_sum(&Tensor::from_vec(vec![r as i64, 10], &[2], &dev)?)?.to_vec::<i64>()?;
        let root = g.broadcast(&Tensor::from_vec(vec![r as f64; 3], &[3], &dev)?, 2)?.to_vec::<f64>()?;
        g.barrier()?;
        let halves = g.all_reduce_sum(&Tensor::from_vec(vec![bf16::ONE], &[1], &dev)?).unwrap_err().to_string();
        Ok((sum, ints, root, halves, g.world_size()))
    });
    for got in got {
        let (sum, ints, root, halves, size) = got?;
        assert_eq!((sum[0], sum[1].to_bits()), (6.0, want[1].to_bits()), "rank-order sum");
        assert_eq!((ints, root, size), (vec![3, 30], vec![2.0; 3], 3));
        assert!(halves.contains("cannot sum"), "{halves}");
    }
    Ok(())
}

#[test]
fn mismatched_calls_and_aborts_end_the_group_instead_of_hanging() {
    let errors = in_group(2, |g| {
        let t = Tensor::zeros(&[1], DType::F32, &cpu()).unwrap();
        let r = if g.rank() == 0 { g.barrier() } else { g.all_reduce_sum(&t).map(drop) };
        r.unwrap_err().to_string()
    });
    assert!(errors.iter().any(|e| e.contains("called")), "{errors:?}");
    let errors = in_group(2, |g| {
        if g.rank() == 1 {
            g.abort("disk full");
            return String::new();
        }
        g.all_reduce_sum(&Tensor::zeros(&[1], DType::F32, &cpu()).unwrap()).unwrap_err().to_string()
    });
    assert!(errors[0].contains("aborted") && errors[0].contains("member 1: disk full"), "{errors:?}");
}

/// Parameters `a [3]`, `b [2]`, `c [4]`; member `r`'s loss reads `a` and `c` with its own
/// data, and `b` only on member 0.
fn params() -> Result<Vec<Param>> {
    let dev = cpu();
    let p = |name: &str, v: &[f32]| Param::new(name, Tensor::from_slice(v, &[v.len()], &dev)?);
    Ok(vec![p("a", &[0.5, -1.0, 2.0])?, p("b", &[1.5, 0.25])?, p("c", &[1.0, 2.0, -3.0, 0.5])?])
}

fn loss(params: &[Param], rank: usize) -> Result<Tensor> {
    let dev = cpu();
    let (a, b, c) = (params[0].tensor(), params[1].tensor(), params[2].tensor());
    let x = Tensor::from_vec(vec![1.0 + rank as f32, -2.0, 0.5 * rank as f32], &[3], &dev)?;
    let mut l = a.mul(&x)?.sqr()?.sum_all()?.add(&c.sqr()?.mul_scalar(1.0 + rank as f64)?.sum_all()?)?;
    if rank == 0 {
        l = l.add(&b.mul(&b)?.sum_all()?)?;
    }
    Ok(l)
}

#[test]
fn buckets_sum_the_members_gradients_including_parameters_only_some_reached() -> Result<()> {
    // Each member's gradients alone, summed: what every member must get.
    let mut want = vec![vec![0.0f32; 0]; 3];
    for rank in 0..2 {
        let ps = params()?;
        let grads = loss(&ps, rank)?.backward()?;
        for (i, p) in ps.iter().enumerate() {
            if let Some(g) = grads.get(&p.tensor()) {
                let g = g.to_vec::<f32>()?;
                want[i] = if want[i].is_empty() { g } else { want[i].iter().zip(&g).map(|(x, y)| x + y).collect() };
            }
        }
    }
    // One parameter per bucket (b's bucket completes on member 0 only), then one bucket.
    for bytes in [1, 1 << 20] {
        let got = in_group(2, |g| -> Result<Vec<Vec<f32>>> {
            let ps = params()?;
            let buckets = GradBuckets::new(&ps, bytes);
            let (grads, _) = buckets.backward(&loss(&ps, g.rank())?, &CommThread::new(Arc::new(g))?)?;
            ps.iter().map(|p| grads.get(&p.tensor()).expect("every parameter has the group's gradient").to_vec::<f32>()).collect()
        });
        for (rank, got) in got.into_iter().enumerate() {
            assert_eq!(got?, want, "member {rank}, buckets of {bytes} bytes");
        }
    }
    Ok(())
}

#[test]
fn backward_with_reports_each_leaf_once_with_its_final_gradient() -> Result<()> {
    let dev = cpu();
    let w = Tensor::from_vec(vec![1.0f32, -2.0], &[2], &dev)?.requires_grad(true)?;
    let u = Tensor::from_vec(vec![3.0f32, 0.5], &[2], &dev)?.requires_grad(true)?;
    // w is read by three ops, u by one.
    let y = w.mul(&u)?.sum_all()?.add(&w.sqr()?.sum_all()?)?.add(&w.mul_scalar(3.0)?.sum_all()?)?;
    let mut reported: Vec<(TensorId, Vec<f32>)> = Vec::new();
    let grads = y.backward_with(|id, g| {
        reported.push((id, g.to_vec::<f32>()?));
        Ok(())
    })?;
    assert_eq!(reported.len(), 2, "each leaf once");
    for (id, g) in &reported {
        assert_eq!(g, &grads.get_id(*id).expect("a leaf's gradient").to_vec::<f32>()?, "the final gradient");
    }
    assert_eq!(grads.get(&w).unwrap().to_vec::<f32>()?, vec![3.0 + 2.0 + 3.0, 0.5 - 4.0 + 3.0]);
    Ok(())
}

/// A BatchNorm synchronised over two members, each with half of a batch, is the BatchNorm
/// of the whole batch (f64, to 1e-12): outputs, statistics, and the gradients of the input
/// (each member its half) and of the parameters (summed in buckets). The backward pass makes
/// its own all-reduces between the buckets' (a scale `s` before the BatchNorm completes
/// its gradient after them), in the same order on both members.
#[test]
fn sync_batch_norm_over_two_members_is_the_whole_batchs() -> Result<()> {
    let dev = cpu();
    let shape = [4, 3, 2, 3];
    let x: Vec<f64> = (0..72).map(|i| ((i * 7919) % 23) as f64 / 5.0 - 2.0 + (i / 6 % 3) as f64).collect();
    let r: Vec<f64> = (0..72).map(|i| ((i * 104729) % 17) as f64 / 8.0 - 1.0).collect();
    let params = || -> Result<Vec<Param>> {
        let p = |name: &str, v: &[f64]| Param::new(name, Tensor::from_slice(v, &[v.len()], &dev)?);
        Ok(vec![p("s", &[1.25])?, p("w", &[1.5, 0.5, -1.0])?, p("b", &[0.1, -0.2, 0.3])?])
    };
    // `(y, loss, mean, var, count)` of samples `half` (of 2; all with `None`), in `group`.
    let forward = |ps: &[Param], x: &Param, half: Option<usize>, group: Option<&Arc<dyn Collective>>| -> Result<_> {
        let scaled = x.tensor().mul(&ps[0].tensor())?;
        let (w, b) = (ps[1].tensor(), ps[2].tensor());
        let (y, stats) = match group {
            Some(g) => scaled.batch_norm_train_in(Some(&w), Some(&b), 1e-5, g)?,
            None => scaled.batch_norm_train(Some(&w), Some(&b), 1e-5)?,
        };
        let r = Tensor::from_slice(&r, &shape, &dev)?;
        let r = half.map_or(Ok(r.clone()), |h| r.narrow(0, 2 * h, 2))?;
        let loss = y.mul(&r)?.sum_all()?;
        Ok((y, loss, stats.mean.to_vec::<f64>()?, stats.var.to_vec::<f64>()?, stats.count))
    };
    let whole_x = Param::new("x", Tensor::from_slice(&x, &shape, &dev)?)?;
    let ps = params()?;
    let (y, loss, mean, var, count) = forward(&ps, &whole_x, None, None)?;
    let grads = loss.backward()?;
    let grad = |p: &Param, g: &beit_engine::Gradients| g.get(&p.tensor()).expect("a gradient").to_vec::<f64>();
    let (want_y, want_dx) = (y.to_vec::<f64>()?, grad(&whole_x, &grads)?);
    let want_dp = ps.iter().map(|p| grad(p, &grads)).collect::<Result<Vec<_>>>()?;

    let got = in_group(2, |g| -> Result<_> {
        let rank = g.rank();
        let comm = Arc::new(CommThread::new(Arc::new(g))?);
        let group: Arc<dyn Collective> = comm.clone();
        let ps = params()?;
        let x = Param::new("x", Tensor::from_slice(&x, &shape, &dev)?.narrow(0, 2 * rank, 2)?.contiguous()?)?;
        let (y, loss, mean, var, count) = forward(&ps, &x, Some(rank), Some(&group))?;
        let (grads, _) = GradBuckets::new(&ps, 1).backward(&loss, &comm)?;
        let dp = ps.iter().map(|p| grad(p, &grads)).collect::<Result<Vec<_>>>()?;
        Ok((y.to_vec::<f64>()?, grad(&x, &grads)?, dp, mean, var, count))
    });
    let close = |what: &str, got: &[f64], want: &[f64]| {
        let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(got.len() == want.len() && worst < 1e-12, "{what}: {got:?} vs {want:?}");
    };
    for (rank, got) in got.into_iter().enumerate() {
        let (y, dx, dp, m, v, n) = got?;
        let half = 36 * rank..36 * (rank + 1);
        close(&format!("member {rank}: output"), &y, &want_y[half.clone()]);
        close(&format!("member {rank}: input gradient"), &dx, &want_dx[half]);
        for (i, name) in ["s", "w", "b"].iter().enumerate() {
            close(&format!("member {rank}: gradient of {name}"), &dp[i], &want_dp[i]);
        }
        close(&format!("member {rank}: statistics"), &[m, v].concat(), &[mean.clone(), var.clone()].concat());
        assert_eq!(n, count, "member {rank}: count");
    }
    Ok(())
}
