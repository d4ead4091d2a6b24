//! Define-by-run autograd: every op on a tracked tensor records a `Node` holding its
//! parents and a backward closure owning only what the backward needs. [`Tensor::backward`]
//! walks the nodes in reverse topological order; each closure is dropped (freeing its saved
//! tensors) right after it ran.

use crate::{Error, Result, Tensor, TensorId};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// A backward closure: given the output gradient and which parents need one, returns one
/// optional gradient per parent.
pub(crate) type BackwardFn = Box<dyn FnOnce(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

struct Parent {
    id: TensorId,
    shape: Vec<usize>,
    tracks: bool,
    node: Option<Arc<Node>>,
}

/// The record of one op in the graph.
pub(crate) struct Node {
    name: &'static str,
    parents: Vec<Parent>,
    backward: Mutex<Option<BackwardFn>>,
}

impl Node {
    pub(crate) fn new(name: &'static str, parents: &[&Tensor], backward: BackwardFn) -> Self {
        let parents = parents
            .iter()
            .map(|p| Parent { id: p.id(), shape: p.shape().to_vec(), tracks: p.tracks_grad(), node: p.node().cloned() })
            .collect();
        Node { name, parents, backward: Mutex::new(Some(backward)) }
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops record the graph on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Whether an op on `inputs` records the graph: grad mode is on and an input tracks
/// gradients.
pub(crate) fn records(inputs: &[&Tensor]) -> bool {
    is_grad_enabled() && inputs.iter().any(|t| t.tracks_grad())
}

/// Restores the previous grad mode when dropped.
pub struct NoGradGuard(bool);

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.0));
    }
}

/// Turn off graph recording on this thread until the guard is dropped (inference).
pub fn no_grad() -> NoGradGuard {
    NoGradGuard(GRAD_ENABLED.with(|g| g.replace(false)))
}

/// Gradients of the requires-grad leaves, keyed by tensor identity.
#[derive(Default)]
pub struct Gradients(HashMap<TensorId, Tensor>);

impl Gradients {
    /// The gradient of `t`, if it was reached.
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.0.get(&t.id())
    }

    /// The gradient by id.
    pub fn get_id(&self, id: TensorId) -> Option<&Tensor> {
        self.0.get(&id)
    }

    /// Remove and return the gradient of `t`.
    pub fn remove(&mut self, t: &Tensor) -> Option<Tensor> {
        self.0.remove(&t.id())
    }

    /// Set the gradient of `t` (e.g. after clipping).
    pub fn insert(&mut self, t: &Tensor, grad: Tensor) {
        self.0.insert(t.id(), grad);
    }

    /// Number of gradients held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no gradient is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All `(id, gradient)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&TensorId, &Tensor)> {
        self.0.iter()
    }
}

impl Tensor {
    /// Back-propagate from this scalar; returns the gradients of every requires-grad leaf
    /// it depends on. The graph is consumed: a second call is an error.
    pub fn backward(&self) -> Result<Gradients> {
        self.backward_with(|_, _| Ok(()))
    }

    /// [`Tensor::backward`], calling `ready(id, grad)` for each requires-grad leaf as soon
    /// as its gradient is complete (no op left to process reads the leaf), in the order
    /// the walk completes them: the same on every run of the same graph. Data-parallel
    /// training starts summing those gradients over the group while the walk goes on.
    pub fn backward_with(&self, mut ready: impl FnMut(TensorId, &Tensor) -> Result<()>) -> Result<Gradients> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!("backward needs a scalar, got shape {:?}", self.shape())));
        }
        if !self.tracks_grad() {
            return Err(Error::Autograd("backward on a tensor that does not track gradients".into()));
        }
        let _guard = no_grad();
        let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
        grads.insert(self.id(), self.ones_like()?);
        let Some(root) = self.node() else {
            return Ok(Gradients(grads));
        };
        let order: Vec<_> = topo_order(self.id(), root).into_iter().rev().collect();
        // For each leaf, the position of the last node (in walk order) that reads it.
        let mut last_reader = HashMap::new();
        for (k, (_, node)) in order.iter().enumerate() {
            for p in node.parents.iter().filter(|p| p.tracks && p.node.is_none()) {
                last_reader.insert(p.id, k);
            }
        }
        let mut completes: Vec<Vec<TensorId>> = vec![Vec::new(); order.len()];
        for (id, k) in last_reader {
            completes[k].push(id);
        }
        for (k, (out_id, node)) in order.into_iter().enumerate() {
            let done = std::mem::take(&mut completes[k]);
            let Some(grad) = grads.remove(&out_id) else {
                report_ready(&node, &done, &grads, &mut ready)?;
                continue;
            };
            let backward = node
                .backward
                .lock()
                .map_err(|_| Error::Autograd("poisoned graph node".into()))?
                .take()
                .ok_or_else(|| Error::Autograd(format!("graph of `{}` already consumed by an earlier backward", node.name)))?;
            let needs: Vec<bool> = node.parents.iter().map(|p| p.tracks).collect();
            let parent_grads = backward(&grad, &needs)?;
            for (parent, g) in node.parents.iter().zip(parent_grads) {
                let Some(g) = g.filter(|_| parent.tracks) else { continue };
                if g.shape() != parent.shape.as_slice() {
                    return Err(Error::Autograd(format!(
                        "backward of `{}` gave a gradient of shape {:?} for an input of shape {:?}",
                        node.name,
                        g.shape(),
                        parent.shape
                    )));
                }
                let acc = match grads.remove(&parent.id) {
                    Some(prev) => prev.add(&g)?,
                    None => g,
                };
                grads.insert(parent.id, acc);
            }
            report_ready(&node, &done, &grads, &mut ready)?;
        }
        grads.remove(&self.id());
        Ok(Gradients(grads))
    }
}

/// Call `ready` for the leaves in `done` (in `node`'s parent order, the same on every run)
/// that got a gradient.
fn report_ready(node: &Node, done: &[TensorId], grads: &HashMap<TensorId, Tensor>, ready: &mut impl FnMut(TensorId, &Tensor) -> Result<()>) -> Result<()> {
    let mut seen = HashSet::new();
    for p in node.parents.iter().filter(|p| done.contains(&p.id) && seen.insert(p.id)) {
        if let Some(g) = grads.get(&p.id) {
            ready(p.id, g)?;
        }
    }
    Ok(())
}

/// Nodes reachable from `root`, parents before children.
fn topo_order(root_id: TensorId, root: &Arc<Node>) -> Vec<(TensorId, Arc<Node>)> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // Iterative post-order DFS: (id, node, next parent index).
    let mut stack = vec![(root_id, root.clone(), 0usize)];
    seen.insert(root_id);
    while let Some((id, node, i)) = stack.pop() {
        if let Some(p) = node.parents.get(i) {
            stack.push((id, node.clone(), i + 1));
            if let Some(pn) = &p.node {
                if seen.insert(p.id) {
                    stack.push((p.id, pn.clone(), 0));
                }
            }
        } else {
            order.push((id, node));
        }
    }
    order
}
