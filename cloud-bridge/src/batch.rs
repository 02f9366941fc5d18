//! Group commit: the store writes of many message tasks in one transaction. A
//! writer thread takes the jobs waiting when it is free, lingers a moment for
//! more, and writes them together, so a busy service commits once per batch
//! instead of once per message, and no store write runs on the async workers.
//! Each commit rewrites whole pages, so at a few thousand messages a second the
//! commits, not the rows, are the store's cost.

use tokio::sync::{mpsc, oneshot};

type Job<J, R> = (J, oneshot::Sender<R>);

/// Submits jobs to a writer thread; results come back per job.
pub struct GroupCommit<J, R> {
    jobs: mpsc::UnboundedSender<Job<J, R>>,
}

impl<J: Send + 'static, R: Send + 'static> GroupCommit<J, R> {
    /// The largest batch written at once.
    pub const MAX_BATCH: usize = 512;

    /// Starts the writer thread. After the first job of a batch it waits up to
    /// `linger` for more (zero: only what is already waiting). `write` gets a
    /// batch and returns one result per job, in order. The thread ends when the
    /// last `GroupCommit` handle is dropped.
    pub fn start(
        name: &str,
        linger: std::time::Duration,
        write: impl Fn(&[J]) -> Vec<R> + Send + 'static,
    ) -> std::io::Result<GroupCommit<J, R>> {
        let (jobs, mut waiting) = mpsc::unbounded_channel::<Job<J, R>>();
        std::thread::Builder::new().name(name.to_string()).spawn(move || {
            while let Some(first) = waiting.blocking_recv() {
                let mut batch = vec![first];
                let until = std::time::Instant::now() + linger;
                while batch.len() < Self::MAX_BATCH {
                    match waiting.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(mpsc::error::TryRecvError::Empty) if std::time::Instant::now() < until => {
                            std::thread::sleep(std::time::Duration::from_micros(200));
                        }
                        Err(_) => break,
                    }
                }
                let (inputs, replies): (Vec<J>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
                let results = write(&inputs);
                debug_assert_eq!(results.len(), replies.len());
                for (reply, result) in replies.into_iter().zip(results) {
                    // The submitter may have gone (shutdown); nothing to tell it.
                    let _ = reply.send(result);
                }
            }
        })?;
        Ok(GroupCommit { jobs })
    }

    /// Writes `job` with whatever else is waiting; `None` if the writer is gone.
    pub async fn submit(&self, job: J) -> Option<R> {
        let (reply, result) = oneshot::channel();
        self.jobs.send((job, reply)).ok()?;
        result.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_waiting_together_are_written_together_and_each_gets_its_own_result() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let gate = Arc::new(std::sync::Barrier::new(2));
        let hold = gate.clone();
        let writer = Arc::new(
            GroupCommit::start("test-writer", std::time::Duration::ZERO, move |jobs: &[u32]| {
                if jobs == [0] {
                    hold.wait(); // the first batch is held while others queue up
                }
                seen.lock().unwrap().push(jobs.to_vec());
                jobs.iter().map(|j| j * 10).collect()
            })
            .unwrap(),
        );
        let first = tokio::spawn({
            let w = writer.clone();
            async move { w.submit(0).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let rest: Vec<_> = (1..=5)
            .map(|j| {
                let w = writer.clone();
                tokio::spawn(async move { w.submit(j).await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        gate.wait();
        assert_eq!(first.await.unwrap(), Some(0));
        for (j, handle) in (1..=5).zip(rest) {
            assert_eq!(handle.await.unwrap(), Some(j * 10));
        }
        let mut batches = batches.lock().unwrap().clone();
        batches[1].sort();
        assert_eq!(batches, vec![vec![0], vec![1, 2, 3, 4, 5]]);
    }
}
