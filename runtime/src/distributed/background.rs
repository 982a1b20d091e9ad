//! The communication thread of a data-parallel run. The training step's `all_reduce_start`
//! kernels hand their buffers to it and return at once; it reduces them one at a time, in the
//! order they were started (the same on every rank, as MPI requires of collectives), while the
//! kernels after each start go on; an `all_reduce_wait` kernel blocks until its buffer is done.
//! A thread of its own does the communication because MPI implementations progress a
//! nonblocking collective mostly inside later MPI calls, which the kernels never make.

use crate::float_mode::FlushSubnormals;
use kiln_compiler::collective::Collective;
use kiln_compiler::{Error, Result};
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

/// A blocking collective run on a thread of its own, so that its all-reduces can be started
/// and waited for separately.
pub(crate) struct Background {
    queue: Mutex<Queue>,
    thread: Option<JoinHandle<()>>,
}

struct Queue {
    /// Jobs for the thread; `None` once it is told to stop.
    jobs: Option<Sender<Job>>,
    /// What each buffer under way (by address) signals when it is done.
    pending: HashMap<usize, Receiver<()>>,
}

/// A buffer to reduce and the signal that it is done.
struct Job {
    data: *mut f32,
    len: usize,
    done: Sender<()>,
}

// SAFETY: the buffer belongs to the job between its start and its wait (`Collective::start`'s
// contract), so the communication thread may write it.
unsafe impl Send for Job {}

impl Background {
    /// Starts the thread that runs `inner`'s all-reduces.
    pub(crate) fn spawn(inner: Arc<dyn Collective>) -> Result<Background> {
        let (jobs, received) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("kiln-all-reduce".into())
            .spawn(move || {
                // The kernels' floating-point mode, so that a reduction gives the same bits
                // here as on the kernels' thread.
                let _mode = FlushSubnormals::start();
                for job in received {
                    // SAFETY: the buffer is the job's until its wait (see `Job`).
                    let data = unsafe { std::slice::from_raw_parts_mut(job.data, job.len) };
                    inner.all_reduce(data);
                    // The waiter may be gone only if its program was dropped mid-run.
                    let _ = job.done.send(());
                }
            })
            .map_err(|e| {
                Error::InvalidArgument(format!("cannot start the communication thread: {e}"))
            })?;
        Ok(Background {
            queue: Mutex::new(Queue {
                jobs: Some(jobs),
                pending: HashMap::new(),
            }),
            thread: Some(thread),
        })
    }
}

impl Collective for Background {
    /// Through the thread as well, so that every collective keeps the order it was asked in.
    fn all_reduce(&self, data: &mut [f32]) {
        // SAFETY: `data` is borrowed until the wait returns.
        unsafe { self.start(data.as_mut_ptr(), data.len()) };
        self.wait(data.as_mut_ptr());
    }

    unsafe fn start(&self, data: *mut f32, len: usize) {
        let (done, signal) = mpsc::channel();
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.pending.insert(data as usize, signal);
        let sent = queue.jobs.as_ref().map(|j| j.send(Job { data, len, done }));
        assert!(
            matches!(sent, Some(Ok(()))),
            "the communication thread has stopped"
        );
    }

    fn wait(&self, data: *mut f32) {
        let signal = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending
            .remove(&(data as usize));
        if let Some(signal) = signal {
            signal
                .recv()
                .expect("the communication thread stopped during an all-reduce");
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let queue = self.queue.get_mut().unwrap_or_else(PoisonError::into_inner);
        queue.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::SyncSender;

    /// Adds 1 to every element, after telling which buffer (by its first value) it got and
    /// waiting to be let go.
    struct Gated {
        got: SyncSender<f32>,
        go: Mutex<Receiver<()>>,
    }

    impl Collective for Gated {
        fn all_reduce(&self, data: &mut [f32]) {
            self.got.send(data[0]).unwrap();
            self.go.lock().unwrap().recv().unwrap();
            data.iter_mut().for_each(|x| *x += 1.0);
        }
    }

    #[test]
    fn a_started_all_reduce_runs_on_the_thread_in_start_order_until_its_wait() {
        let (got, reduced) = mpsc::sync_channel(4);
        let (go, gate) = mpsc::channel();
        let inner = Gated {
            got,
            go: Mutex::new(gate),
        };
        let background = Background::spawn(Arc::new(inner)).unwrap();
        let (mut a, mut b) = (vec![10.0f32; 3], vec![20.0f32; 5]);
        // SAFETY: `a` and `b` are not touched until their waits return.
        unsafe {
            background.start(a.as_mut_ptr(), a.len());
            background.start(b.as_mut_ptr(), b.len());
        }
        // Both starts returned while the first reduction is held at the gate.
        assert_eq!(reduced.recv().unwrap(), 10.0);
        go.send(()).unwrap();
        assert_eq!(reduced.recv().unwrap(), 20.0);
        go.send(()).unwrap();
        background.wait(b.as_mut_ptr());
        background.wait(a.as_mut_ptr());
        assert_eq!((&a[..], &b[..]), (&[11.0; 3][..], &[21.0; 5][..]));
        // Nothing under way: a wait returns at once; a whole all-reduce goes through the thread.
        background.wait(a.as_mut_ptr());
        go.send(()).unwrap();
        let mut c = vec![1.0f32; 2];
        background.all_reduce(&mut c);
        assert_eq!((reduced.recv().unwrap(), c), (1.0, vec![2.0; 2]));
    }
}
