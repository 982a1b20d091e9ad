//! Data parallelism in the training graph: the gradients, and the layers' state updates, are
//! all-reduced over the replicas ([`Op::AllReduce`](crate::ir::Op::AllReduce)) before the
//! optimizer reads them, in buckets taken in the order the backward pass produces them (the
//! last layer's first, as PyTorch DDP's buckets are). Each bucket's all-reduce is a start and
//! a wait, so that the schedule can run the rest of the backward pass while it is under way
//! (the schedule's `overlap` step).
//!
//! Every non-trainable state update (batch-norm moving statistics, or any future layer's state)
//! is reduced the same way, so replicas keep identical state without a layer knowing it is
//! replicated.

use crate::error::{Error, Result};
use crate::ir::{Graph, NodeId, Shape};

/// How the training step is replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// A bucket is closed once it holds at least this many bytes (one value larger than it is
    /// a bucket of its own).
    pub bucket_bytes: usize,
}

impl Default for Replication {
    /// 512 KiB buckets: each large enough that the transfer, not the latency, dominates, and
    /// small enough that the seed CNN's dense layers (0.8 MB of its 0.9 MB of gradients) close
    /// a bucket whose all-reduce overlaps the convolutions' backward pass.
    fn default() -> Self {
        Replication {
            bucket_bytes: 1 << 19,
        }
    }
}

impl Replication {
    /// `values` all-reduced over the replicas, in buckets filled from the last value to the
    /// first; returns the reduced value of each, in the order given.
    pub fn all_reduce(&self, g: &mut Graph, values: &[NodeId]) -> Result<Vec<NodeId>> {
        let mut out = values.to_vec();
        let mut bucket = Vec::new();
        let mut bytes = 0;
        for (i, &v) in values.iter().enumerate().rev() {
            bucket.push(i);
            bytes += 4 * element_count(g, v)?;
            if bytes >= self.bucket_bytes {
                reduce_bucket(g, &std::mem::take(&mut bucket), &mut out)?;
                bytes = 0;
            }
        }
        if !bucket.is_empty() {
            reduce_bucket(g, &bucket, &mut out)?;
        }
        Ok(out)
    }
}

/// Replaces `out[i]` for each `i` of `bucket` by its all-reduced value: one all-reduce of the
/// values flattened and joined.
fn reduce_bucket(g: &mut Graph, bucket: &[usize], out: &mut [NodeId]) -> Result<()> {
    if let [i] = bucket {
        out[*i] = g.all_reduce_overlapped(out[*i])?.1;
        return Ok(());
    }
    let mut flat = Vec::with_capacity(bucket.len());
    for &i in bucket {
        let n = element_count(g, out[i])?;
        flat.push((g.reshape(out[i], Shape::fixed(&[n]))?, n));
    }
    let joined = g.concat(&flat.iter().map(|f| f.0).collect::<Vec<_>>(), 0)?;
    let reduced = g.all_reduce_overlapped(joined)?.1;
    let mut start = 0;
    for (&i, &(_, n)) in bucket.iter().zip(&flat) {
        let shape = g.shape(out[i]).clone();
        let part = g.slice(reduced, 0, start, start + n)?;
        out[i] = g.reshape(part, shape)?;
        start += n;
    }
    Ok(())
}

/// The number of elements of `v`, which must not depend on the batch size.
fn element_count(g: &Graph, v: NodeId) -> Result<usize> {
    let shape = g.shape(v);
    if shape.has_batch() {
        return Err(Error::shape(
            "all_reduce",
            format!("a replicated value cannot depend on the batch size, found {shape}"),
        ));
    }
    Ok(shape.concrete(1).iter().product())
}
