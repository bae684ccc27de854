//! Pool membership: an agent's loop starts when it joins, ends when it
//! leaves, and a lost agent is replaced; its local queue goes back to the
//! global queue.

use std::sync::Weak;

use swarm_agents::MembershipObserver;

use super::*;

/// Tells the scheduler of the pool's membership changes, by a direct call
/// from the pool. Holds the core weakly: the core owns the pool.
pub(crate) struct Membership(Weak<Core>);

impl Membership {
    pub(crate) fn new(core: &Arc<Core>) -> Self {
        Membership(Arc::downgrade(core))
    }
}

impl MembershipObserver for Membership {
    fn agent_added(&self, id: AgentId, _reserve: bool) {
        if let Some(core) = self.0.upgrade() {
            core.start_agent(id);
        }
    }

    fn agent_removed(&self, id: AgentId) {
        if let Some(core) = self.0.upgrade() {
            core.stop_agent(id);
        }
    }

    fn agents_activated(&self, _ids: &[AgentId]) {
        // Activated reserve agents are idle in the pool: give them work.
        if let Some(core) = self.0.upgrade() {
            core.dispatch_soon();
        }
    }
}

impl Core {
    /// Starts the loop of a new agent (event mode). Safe to call from an event
    /// handler: takes only the inbox lock and spawns.
    pub(crate) fn start_agent(self: &Arc<Self>, agent: AgentId) {
        if !self.agents_have_loops() || self.stopped.load(Ordering::Acquire) {
            return;
        }
        let (sender, inbox) = mpsc::channel(1);
        {
            let mut inboxes = self.inboxes.lock();
            if inboxes.contains_key(&agent) {
                return;
            }
            inboxes.insert(
                agent,
                Inbox {
                    sender,
                    agent_loop: None,
                },
            );
        }
        self.local.register(agent);
        let core = Arc::clone(self);
        let handle = self.runtime.spawn(agent_loop(core, agent, inbox));
        if let Some(entry) = self.inboxes.lock().get_mut(&agent) {
            entry.agent_loop = Some(handle.abort_handle());
        }
    }

    /// Forgets a removed agent: its loop ends, its local queue goes back to
    /// the global queue. Safe to call from an event handler (spawns the part
    /// that needs the scheduler lock).
    pub(crate) fn stop_agent(self: &Arc<Self>, agent: AgentId) {
        self.inboxes.lock().remove(&agent);
        let core = Arc::clone(self);
        self.runtime.spawn(async move {
            let mut s = core.sched.lock();
            core.requeue_local_of(&mut s, agent);
        });
    }

    pub(super) fn requeue_local_of(&self, s: &mut Sched, agent: AgentId) {
        let items = self.local.deregister(agent);
        for (queued, priority) in items {
            self.bus.emit(TaskDequeued {
                task_id: queued.task.id(),
                priority,
                queue: QueueLocation::Local(agent),
            });
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.push_global(s, queued);
        }
        self.dispatch_idle(s);
    }

    /// An agent whose loop ended unexpectedly (its inbox closed, or a panic
    /// escaped its attempt): it leaves the pool, a replacement is made, and
    /// its local queue goes back to the global queue. Never re-offered work.
    pub(super) fn lose_agent(&self, s: &mut Sched, agent: AgentId, why: &str) {
        tracing::error!(agent = %agent, why, "agent loop ended; replacing the agent");
        self.inboxes.lock().remove(&agent);
        if self.pool.remove_agent(agent, why) {
            if let Err(error) = self.pool.spawn_agents(1) {
                tracing::warn!(agent = %agent, %error, "could not replace a lost agent; the pool is one agent smaller");
            }
        }
        self.requeue_local_of(s, agent);
    }
}

/// One agent's loop (event mode): sleeps on its inbox; after each attempt takes
/// its next task itself, without going back through the inbox.
async fn agent_loop(core: Arc<Core>, agent: AgentId, mut inbox: mpsc::Receiver<Assignment>) {
    // A new agent looks for queued work once, then sleeps.
    let mut next = {
        let mut s = core.sched.lock();
        match core.take_work(&mut s, agent) {
            AfterAttempt::Run(a) => Some(a),
            _ => None,
        }
    };
    loop {
        let assignment = match next.take() {
            Some(a) => a,
            None => match inbox.recv().await {
                Some(a) => {
                    Counters::bump(&core.counters.wakeups);
                    a
                }
                None => return,
            },
        };
        // The pool guards the agent's own code; this guards the rest, so a
        // bug cannot kill the loop and leave its inbox registered.
        let Some(attempt) = core.run_guarded(agent, assignment).await else {
            return;
        };
        match core.finish(agent, attempt) {
            AfterAttempt::Run(a) => next = Some(a),
            AfterAttempt::Wait => {}
            AfterAttempt::Exit => return,
        }
    }
}
