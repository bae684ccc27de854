//! Cancellation: of a queued task, a delayed one, a task waiting for its retry, or a
//! running attempt (dropped; an attempt cancelled before its first poll
//! never ran).

use super::*;

impl Core {
    pub(crate) fn cancel(&self, task_id: TaskId) -> Result<(), CancelError> {
        let mut s = self.sched.lock();
        if let Some(running) = s.running.get_mut(&task_id) {
            running.stop = Some(Stop::Cancel);
            running.abort.abort();
            return Ok(());
        }
        if self.remove_delayed(&mut s, task_id) || self.remove_parked(&mut s, task_id) {
            self.cancelled_queued(&mut s, task_id);
            return Ok(());
        }
        let removed = s
            .global
            .remove_first(|q| q.task.id() == task_id)
            .map(|(q, p)| (q, p, QueueLocation::Global))
            .or_else(|| {
                self.local
                    .remove_first(|q| q.task.id() == task_id)
                    .map(|(agent, q, p)| (q, p, QueueLocation::Local(agent)))
            })
            .or_else(|| {
                let i = s.fifo.iter().position(|q| q.task.id() == task_id)?;
                s.fifo.remove(i).map(|q| {
                    let p = q.task.priority();
                    (q, p, QueueLocation::Global)
                })
            });
        match removed {
            Some((queued, priority, location)) => {
                self.note_dequeue(&mut s, task_id, priority, location);
                self.drop_promise(&mut s, &queued);
                self.cancelled_queued(&mut s, task_id);
                Ok(())
            }
            None => Err(CancelError::NotFound(task_id)),
        }
    }

    pub(super) fn cancelled_queued(&self, s: &mut Sched, task_id: TaskId) {
        self.bus.emit(TaskCancelled {
            task_id,
            was_running: false,
        });
        Counters::bump(&self.counters.cancelled);
        self.pool.forget_history(task_id);
        resolve(s, task_id, TaskOutcome::Cancelled { was_running: false });
    }
}
