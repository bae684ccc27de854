//! [`Snapshotter`]: snapshots the replayed state by events and by time, off the
//! append path and off the runtime's worker threads.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::{Instant, Sleep};

use crate::error::{Result, StoreError};
use crate::state::SystemState;
use crate::store::{EventStore, EventStream, Snapshot, StoredEvent};

/// The default count trigger: a snapshot once 10 000 events arrived since the
/// previous one started.
///
/// A snapshot costs O(live + retained state), not O(events since the last):
/// at 500 000 events/s this starts at most 50 a second, and a state of a few
/// thousand tasks encodes in a millisecond or two, so snapshots take a few
/// percent of one blocking thread. A larger state makes each snapshot slower;
/// they then run back to back (one at a time), and the lag is this plus the
/// events that arrive during two snapshots.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;

/// The default time trigger: a snapshot 5 s after the first event it would
/// cover, so a quiet swarm is snapshotted too (restart replays at most a few
/// seconds of events) while an idle one is not woken at all.
pub const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(5);

/// How long a [`Snapshotter`] waits before its first retry after a failure;
/// each further failure in a row doubles the wait, up to
/// [`SNAPSHOT_RETRY_MAX`].
pub const SNAPSHOT_RETRY_MIN: Duration = Duration::from_millis(100);

/// The longest a [`Snapshotter`] waits between two retries.
pub const SNAPSHOT_RETRY_MAX: Duration = Duration::from_secs(30);

/// Called by a [`Snapshotter`] with each error it meets (see
/// [`Snapshotter::spawn_with`]), for example to count it in a metric. It runs
/// on the snapshotter's task: keep it short and do not block.
pub type SnapshotFailureHook = Arc<dyn Fn(&StoreError) + Send + Sync>;

/// Builds the state a [`Snapshotter`] starts from: from the store's newest
/// snapshot (`Some`), or from nothing when the store has none (`None`). See
/// [`SnapshotPolicy::initial_state`].
pub type InitialState = Arc<dyn Fn(Option<&Snapshot>) -> Result<SystemState> + Send + Sync>;

/// Called by a [`Snapshotter`] with its lag (see
/// [`Snapshotter::lag_events`]) each time it changes: after each event taken
/// from the log and each snapshot saved. It runs on the snapshotter's task:
/// keep it as cheap as setting a gauge. See [`SnapshotPolicy::on_lag`].
pub type LagHook = Arc<dyn Fn(u64) + Send + Sync>;

/// The wait before retry number `failures` (1 for the first) of a failure streak.
fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    SNAPSHOT_RETRY_MIN
        .saturating_mul(1 << doublings)
        .min(SNAPSHOT_RETRY_MAX)
}

/// When a [`Snapshotter`] takes a snapshot, and the state it folds events into.
///
/// A snapshot starts when either trigger fires, and only if events arrived
/// since the previous one:
/// - by events: [`every_events`](Self::every_events) events arrived since the
///   previous snapshot started (default [`DEFAULT_SNAPSHOT_EVERY`]);
/// - by time: [`every`](Self::every) has passed since the first event the
///   next snapshot will cover arrived (default [`DEFAULT_SNAPSHOT_INTERVAL`]).
///   While no event arrives, no timer is armed.
///
/// One snapshot is in flight at a time: when a trigger fires during one, the
/// next starts as soon as it ends.
///
/// ```
/// use std::time::Duration;
/// use swarm_store::{SnapshotPolicy, SystemState};
///
/// let policy = SnapshotPolicy::new()
///     .every_events(50_000)
///     .every(Duration::from_secs(10))
///     .initial_state(|snapshot| match snapshot {
///         Some(snapshot) => SystemState::from_snapshot(snapshot),
///         None => Ok(SystemState::new()),
///     });
/// assert_eq!(policy.get_every_events(), 50_000);
/// assert_eq!(policy.get_every(), Some(Duration::from_secs(10)));
/// ```
#[derive(Clone)]
pub struct SnapshotPolicy {
    every_events: u64,
    every: Option<Duration>,
    initial_state: InitialState,
    on_lag: Option<LagHook>,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            every_events: DEFAULT_SNAPSHOT_EVERY,
            every: Some(DEFAULT_SNAPSHOT_INTERVAL),
            initial_state: Arc::new(|snapshot| match snapshot {
                Some(snapshot) => SystemState::from_snapshot(snapshot),
                None => Ok(SystemState::new()),
            }),
            on_lag: None,
        }
    }
}

impl fmt::Debug for SnapshotPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotPolicy")
            .field("every_events", &self.every_events)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl SnapshotPolicy {
    /// The default policy: every [`DEFAULT_SNAPSHOT_EVERY`] events or
    /// [`DEFAULT_SNAPSHOT_INTERVAL`], from [`SystemState::from_snapshot`] (or
    /// [`SystemState::new`]).
    pub fn new() -> Self {
        SnapshotPolicy::default()
    }

    /// Sets the count trigger: a snapshot once `events` events arrived since
    /// the previous one started (at least 1; `u64::MAX` turns it off).
    #[must_use]
    pub fn every_events(mut self, events: u64) -> Self {
        self.every_events = events.max(1);
        self
    }

    /// Sets the time trigger: a snapshot `interval` after the first event it
    /// will cover arrived.
    #[must_use]
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = Some(interval);
        self
    }

    /// Turns the time trigger off: snapshots by events only (and on stop).
    #[must_use]
    pub fn without_time_trigger(mut self) -> Self {
        self.every = None;
        self
    }

    /// Sets how the starting state is built: from the store's newest snapshot
    /// (`Some`), or from nothing (`None`), for example to give it a retention
    /// window. The default decodes with [`SystemState::from_snapshot`] and
    /// starts empty with [`SystemState::new`].
    ///
    /// When it fails on a snapshot (a damaged one), the failure is reported
    /// and the snapshot before it is tried, down to `None`.
    #[must_use]
    pub fn initial_state(
        mut self,
        build: impl Fn(Option<&Snapshot>) -> Result<SystemState> + Send + Sync + 'static,
    ) -> Self {
        self.initial_state = Arc::new(build);
        self
    }

    /// Calls `hook` with the snapshotter's lag each time it changes, for
    /// example to set a gauge such as `swarm_snapshot_lag_events`.
    #[must_use]
    pub fn on_lag(mut self, hook: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.on_lag = Some(Arc::new(hook));
        self
    }

    /// The count trigger, in events.
    pub fn get_every_events(&self) -> u64 {
        self.every_events
    }

    /// The time trigger, if on.
    pub fn get_every(&self) -> Option<Duration> {
        self.every
    }
}

/// A background task that follows the log (as a subscriber, so appends never
/// wait for it), keeps its own [`SystemState`], and saves snapshots of it as
/// its [`SnapshotPolicy`] says: by events and by time.
///
/// Encoding a snapshot runs on tokio's blocking pool
/// (`spawn_blocking`), never on a runtime worker; meanwhile the follower goes
/// on taking events from the log (it holds them and folds them in when the
/// state comes back), so it never falls behind the log by more than the
/// events of one snapshot in flight. [`lag_events`](Snapshotter::lag_events)
/// says how far the newest snapshot is behind.
///
/// A failure (to load the starting snapshot, to follow the log, to encode or
/// save a snapshot) does not stop it: it is logged (`tracing` warning),
/// counted ([`failures`](Snapshotter::failures)), given to the hook of
/// [`spawn_with`](Snapshotter::spawn_with), and retried after a back-off that
/// starts at [`SNAPSHOT_RETRY_MIN`] and doubles up to [`SNAPSHOT_RETRY_MAX`];
/// a success resets it. No timer exists while nothing failed and no event
/// waits for a snapshot.
///
/// Stops when the store closes or on [`stop`](Snapshotter::stop), which saves a
/// last snapshot if events arrived since the previous one.
pub struct Snapshotter {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<SystemState>>,
    shared: Arc<Progress>,
}

/// What the task reports to the handle.
#[derive(Default)]
struct Progress {
    /// The sequence of the newest snapshot saved (or started from).
    last_snapshot: AtomicU64,
    /// The sequence of the newest event taken from the log.
    followed: AtomicU64,
    failures: AtomicU64,
    /// The threads snapshots were encoded on, for a test to check.
    #[cfg(test)]
    encoded_on: crate::sync::Mutex<Vec<std::thread::ThreadId>>,
}

impl fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshotter")
            .field("last_snapshot", &self.last_snapshot())
            .field("lag_events", &self.lag_events())
            .field("failures", &self.failures())
            .finish()
    }
}

/// The snapshot in flight.
enum Job {
    /// Being encoded on the blocking pool, which holds the state meanwhile.
    Encoding(JoinHandle<Encoded>),
    /// Being saved; the state is back.
    Saving {
        seq: u64,
        save: BoxFuture<'static, Result<()>>,
    },
}

/// What the blocking encoder hands back: the state, and the snapshot (or why
/// not; a panic is caught so the state survives it).
type Encoded = (SystemState, std::thread::Result<Result<Snapshot>>);

/// How a [`Job`] step ended.
enum Done {
    /// Boxed: the state it carries is large, the other variants small.
    Encoded(Box<std::result::Result<Encoded, JoinError>>),
    Saved(Result<()>),
}

impl Job {
    fn poll_step(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Done> {
        match self {
            Job::Encoding(handle) => Pin::new(handle)
                .poll(cx)
                .map(|encoded| Done::Encoded(Box::new(encoded))),
            Job::Saving { save, .. } => save.as_mut().poll(cx).map(Done::Saved),
        }
    }
}

/// The follower's position and its snapshot in flight.
struct Run {
    /// The state; `None` while a snapshot of it is being encoded.
    state: Option<SystemState>,
    /// Events taken from the log and not yet applied to the state.
    buffer: VecDeque<StoredEvent>,
    /// The sequence of the newest event taken from the log.
    followed: u64,
    /// The sequence of the newest snapshot saved.
    saved: u64,
    /// The sequence of the newest snapshot started (saved, failed or in flight).
    started: u64,
    job: Option<Job>,
    /// Set while a failure waits for its retry.
    retry: Option<Instant>,
    /// When the time trigger fires, set once an event arrived that no started
    /// snapshot covers.
    due: Option<Instant>,
    events: Option<EventStream>,
    /// The one timer, reused, and the deadline it is armed for (`None`: not
    /// armed, not polled).
    timer: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
    /// Whether following failed and has not delivered an event since.
    follow_failed: bool,
}

impl Run {
    /// Arms the timer for the earliest thing to wait for: a retry, else the
    /// time trigger when no snapshot is in flight (one that ends starts the
    /// next at once if it is due).
    fn arm(&mut self) {
        let want = self
            .retry
            .or(if self.job.is_none() { self.due } else { None });
        if want == self.armed {
            return;
        }
        self.armed = want;
        if let Some(at) = want {
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(at),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
    }
}

/// What ended a [`wait`].
enum Wake {
    /// The snapshotter was told to stop (or its handle dropped).
    Stop,
    /// A step of the snapshot in flight ended.
    Job(Done),
    /// The timer fired: a retry or the time trigger.
    Timer,
    /// The subscription yielded (or ended).
    Event(Option<Result<StoredEvent>>),
}

/// Waits for the first of: a stop, the snapshot step in flight, the timer (if
/// armed), the next event (if subscribed); checked in that order. A
/// hand-written `select!`, which would pull in the `tokio-macros` proc-macro
/// crate.
async fn wait(stop_rx: &mut oneshot::Receiver<()>, run: &mut Run) -> Wake {
    poll_fn(|cx| {
        if Pin::new(&mut *stop_rx).poll(cx).is_ready() {
            return Poll::Ready(Wake::Stop);
        }
        if let Some(job) = &mut run.job
            && let Poll::Ready(done) = job.poll_step(cx)
        {
            return Poll::Ready(Wake::Job(done));
        }
        if run.armed.is_some()
            && let Some(timer) = &mut run.timer
            && timer.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Wake::Timer);
        }
        match &mut run.events {
            Some(events) => events.poll_next_unpin(cx).map(Wake::Event),
            None => Poll::Pending,
        }
    })
    .await
}

/// Waits for a stop (`true`) or until `at` (`false`).
async fn stop_or_sleep(stop_rx: &mut oneshot::Receiver<()>, at: Instant) -> bool {
    let mut sleep = Box::pin(tokio::time::sleep_until(at));
    poll_fn(|cx| {
        if Pin::new(&mut *stop_rx).poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        sleep.as_mut().poll(cx).map(|()| false)
    })
    .await
}

/// The message of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_owned()
    }
}

/// The snapshotter's task: its configuration, and how to report.
struct Follower<S> {
    store: Arc<S>,
    policy: SnapshotPolicy,
    progress: Arc<Progress>,
    on_failure: Option<SnapshotFailureHook>,
    /// Failures in a row, for the back-off.
    streak: u32,
}

impl<S: EventStore + 'static> Follower<S> {
    /// Tells the lag hook, if any.
    fn lag_changed(&self, run: &Run) {
        if let Some(hook) = &self.policy.on_lag {
            hook(run.followed.saturating_sub(run.saved));
        }
    }

    /// Logs, counts and hands `error` to the hook.
    fn report(&self, what: &'static str, error: &StoreError, retry_in: Option<Duration>) {
        self.progress.failures.fetch_add(1, Ordering::Relaxed);
        match retry_in {
            Some(delay) => {
                tracing::warn!(%error, what, retry_in = ?delay, "snapshotter failed; it will retry");
            }
            None => tracing::warn!(%error, what, "snapshotter failed"),
        }
        if let Some(hook) = &self.on_failure {
            hook(error);
        }
    }

    /// Reports a failure to be retried, and returns when to retry.
    fn failed(&mut self, what: &'static str, error: &StoreError) -> Instant {
        self.streak = self.streak.saturating_add(1);
        let delay = retry_delay(self.streak);
        self.report(what, error, Some(delay));
        Instant::now() + delay
    }

    /// The starting state: the newest snapshot the policy can build from
    /// (older ones if it fails on newer), retried until the store answers.
    /// `None` when told to stop meanwhile.
    async fn load(&mut self, stop_rx: &mut oneshot::Receiver<()>) -> Option<SystemState> {
        let mut at_or_before = u64::MAX;
        loop {
            let error = match self.store.latest_snapshot(at_or_before).await {
                Ok(Some(snapshot)) => match (self.policy.initial_state)(Some(&snapshot)) {
                    Ok(state) => return Some(state),
                    Err(e) => {
                        // A damaged snapshot: the one before it, or the whole log.
                        self.report(
                            "build the state from a snapshot; trying an older one",
                            &e,
                            None,
                        );
                        at_or_before = snapshot.seq.saturating_sub(1);
                        continue;
                    }
                },
                Ok(None) => match (self.policy.initial_state)(None) {
                    Ok(state) => return Some(state),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            let retry = self.failed("load the starting state", &error);
            if stop_or_sleep(stop_rx, retry).await {
                return None;
            }
        }
    }

    /// Starts a snapshot of the state as it is: encoding moves it to the
    /// blocking pool.
    fn start(&self, run: &mut Run) {
        let Some(state) = run.state.take() else {
            return;
        };
        run.started = state.last_seq();
        // Events taken but not in this snapshot get their own deadline.
        run.due = match self.policy.every {
            Some(every) if !run.buffer.is_empty() => Some(Instant::now() + every),
            _ => None,
        };
        #[cfg(test)]
        let progress = Arc::clone(&self.progress);
        run.job = Some(Job::Encoding(tokio::task::spawn_blocking(move || {
            #[cfg(test)]
            progress.encoded_on.lock().push(std::thread::current().id());
            let snapshot = catch_unwind(AssertUnwindSafe(|| state.to_snapshot()));
            (state, snapshot)
        })));
    }

    /// Applies the events taken while the state was being encoded, and
    /// starts a snapshot when one is due: at the count boundary, or at once
    /// with `now` (a retry, the time trigger). While a snapshot is in flight
    /// nothing starts; the next one starts when it ends, covering every event
    /// taken meanwhile.
    fn advance(&self, run: &mut Run, now: bool) {
        loop {
            let Some(state) = run.state.as_mut() else {
                return;
            };
            let idle = run.job.is_none() && run.retry.is_none();
            if idle && state.last_seq() >= run.started.saturating_add(self.policy.every_events) {
                self.start(run);
                return;
            }
            match run.buffer.pop_front() {
                Some(event) => state.apply(&event),
                None => break,
            }
        }
        if now
            && run.job.is_none()
            && run.retry.is_none()
            && run.state.as_ref().is_some_and(|s| s.last_seq() > run.saved)
        {
            self.start(run);
        }
    }

    /// Takes the end of a snapshot step. Fails only when the encoder was
    /// cancelled (the runtime is shutting down) and took the state with it.
    fn finish(&mut self, run: &mut Run, done: Done) -> Result<()> {
        let saving = match run.job.take() {
            Some(Job::Saving { seq, .. }) => Some(seq),
            _ => None,
        };
        match done {
            Done::Encoded(encoded) => match *encoded {
                Ok((state, encoded)) => {
                    run.state = Some(state);
                    match encoded {
                        Ok(Ok(snapshot)) => {
                            let seq = snapshot.seq;
                            let store = Arc::clone(&self.store);
                            run.job = Some(Job::Saving {
                                seq,
                                save: Box::pin(async move { store.save_snapshot(snapshot).await }),
                            });
                        }
                        Ok(Err(e)) => run.retry = Some(self.failed("encode a snapshot", &e)),
                        Err(panic) => {
                            let e = StoreError::Encode {
                                what: "snapshot",
                                message: format!("encoding panicked: {}", panic_message(&*panic)),
                            };
                            run.retry = Some(self.failed("encode a snapshot", &e));
                        }
                    }
                }
                Err(e) => {
                    return Err(StoreError::io(
                        std::path::PathBuf::new(),
                        std::io::Error::other(format!("the snapshot encoder was cancelled: {e}")),
                    ));
                }
            },
            Done::Saved(Ok(())) => {
                if let Some(seq) = saving {
                    run.saved = seq;
                    self.progress.last_snapshot.store(seq, Ordering::Release);
                    self.lag_changed(run);
                }
                self.streak = 0;
            }
            Done::Saved(Err(e)) => run.retry = Some(self.failed("save a snapshot", &e)),
        }
        Ok(())
    }

    async fn run(mut self, mut stop_rx: oneshot::Receiver<()>) -> Result<SystemState> {
        let Some(state) = self.load(&mut stop_rx).await else {
            return (self.policy.initial_state)(None);
        };
        self.streak = 0;
        let from = state.last_seq();
        self.progress.last_snapshot.store(from, Ordering::Release);
        self.progress.followed.store(from, Ordering::Release);
        let mut run = Run {
            state: Some(state),
            buffer: VecDeque::new(),
            followed: from,
            saved: from,
            started: from,
            job: None,
            retry: None,
            due: None,
            events: Some(self.store.subscribe(from + 1)),
            timer: None,
            armed: None,
            follow_failed: false,
        };
        loop {
            run.arm();
            match wait(&mut stop_rx, &mut run).await {
                Wake::Stop => {
                    // The final snapshot covers the whole log as of the stop,
                    // not just what the subscription had delivered so far.
                    self.take_to_end(&mut run).await;
                    break;
                }
                Wake::Event(None) => break,
                Wake::Event(Some(Ok(event))) => {
                    if event.seq <= run.followed {
                        continue;
                    }
                    if run.follow_failed {
                        run.follow_failed = false;
                        self.streak = 0;
                    }
                    run.followed = event.seq;
                    self.progress.followed.store(event.seq, Ordering::Release);
                    self.lag_changed(&run);
                    if run.due.is_none()
                        && let Some(every) = self.policy.every
                    {
                        run.due = Some(Instant::now() + every);
                    }
                    run.buffer.push_back(event);
                    self.advance(&mut run, false);
                }
                Wake::Event(Some(Err(e))) => {
                    // Follow again from where it stopped, after the back-off.
                    run.events = None;
                    run.follow_failed = true;
                    run.retry = Some(self.failed("follow the log", &e));
                }
                Wake::Job(done) => {
                    self.finish(&mut run, done)?;
                    self.advance(&mut run, false);
                }
                Wake::Timer => {
                    run.armed = None;
                    let now = Instant::now();
                    if run.retry.is_some_and(|at| at <= now) {
                        run.retry = None;
                        if run.events.is_none() {
                            run.events = Some(self.store.subscribe(run.followed + 1));
                        }
                        self.advance(&mut run, true);
                    } else if run.retry.is_none() && run.due.is_some_and(|at| at <= now) {
                        run.due = None;
                        self.advance(&mut run, true);
                    }
                }
            }
        }
        self.finish_up(run).await
    }

    /// Takes (into the buffer) every event the log holds now that the
    /// subscription has not delivered yet. A failure ends it early: the final
    /// snapshot then covers what was taken.
    async fn take_to_end(&mut self, run: &mut Run) {
        let end = match self.store.last_seq().await {
            Ok(end) => end,
            Err(e) => {
                self.report("read the log's end", &e, None);
                return;
            }
        };
        while run.followed < end {
            let events = run
                .events
                .get_or_insert_with(|| self.store.subscribe(run.followed + 1));
            match events.next().await {
                Some(Ok(event)) => {
                    if event.seq <= run.followed {
                        continue;
                    }
                    run.followed = event.seq;
                    self.progress.followed.store(event.seq, Ordering::Release);
                    self.lag_changed(run);
                    run.buffer.push_back(event);
                }
                Some(Err(e)) => {
                    self.report("follow the log", &e, None);
                    return;
                }
                None => return,
            }
        }
    }

    /// Ends the snapshot in flight, applies what is held, and saves a last
    /// snapshot if the state is newer than the newest saved.
    async fn finish_up(&mut self, mut run: Run) -> Result<SystemState> {
        let mut last = false;
        loop {
            while let Some(done) = poll_fn(|cx| match &mut run.job {
                Some(job) => job.poll_step(cx).map(Some),
                None => Poll::Ready(None),
            })
            .await
            {
                self.finish(&mut run, done)?;
            }
            let Some(mut state) = run.state.take() else {
                return Err(StoreError::io(
                    std::path::PathBuf::new(),
                    std::io::Error::other("the snapshotter lost its state"),
                ));
            };
            for event in run.buffer.drain(..) {
                state.apply(&event);
            }
            if last || state.last_seq() <= run.saved {
                if state.last_seq() > run.saved {
                    tracing::warn!(
                        last_seq = state.last_seq(),
                        saved = run.saved,
                        "the snapshotter stopped without saving its final snapshot"
                    );
                }
                return Ok(state);
            }
            run.state = Some(state);
            self.start(&mut run);
            last = true;
        }
    }
}

impl Snapshotter {
    /// Starts following `store` (from its newest snapshot) on the current
    /// tokio runtime, with a snapshot every `every` events and the default
    /// time trigger ([`SnapshotPolicy::new`] with
    /// [`every_events`](SnapshotPolicy::every_events)).
    pub fn spawn<S: EventStore + 'static>(store: Arc<S>, every: u64) -> Snapshotter {
        Snapshotter::spawn_with_policy(store, SnapshotPolicy::new().every_events(every), None)
    }

    /// Like [`spawn`](Snapshotter::spawn), and calls `on_failure` with each
    /// error met (each is also counted in [`failures`](Snapshotter::failures)
    /// and retried after the back-off).
    pub fn spawn_with<S: EventStore + 'static>(
        store: Arc<S>,
        every: u64,
        on_failure: SnapshotFailureHook,
    ) -> Snapshotter {
        Snapshotter::spawn_with_policy(
            store,
            SnapshotPolicy::new().every_events(every),
            Some(on_failure),
        )
    }

    /// Starts following `store` on the current tokio runtime as `policy`
    /// says, calling `on_failure` (if any) with each error met.
    pub fn spawn_with_policy<S: EventStore + 'static>(
        store: Arc<S>,
        policy: SnapshotPolicy,
        on_failure: Option<SnapshotFailureHook>,
    ) -> Snapshotter {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let shared = Arc::new(Progress::default());
        let follower = Follower {
            store,
            policy,
            progress: Arc::clone(&shared),
            on_failure,
            streak: 0,
        };
        let task = tokio::spawn(follower.run(stop_rx));
        Snapshotter {
            stop: Some(stop_tx),
            task,
            shared,
        }
    }

    /// The sequence of the newest snapshot this snapshotter saved or started from.
    pub fn last_snapshot(&self) -> u64 {
        self.shared.last_snapshot.load(Ordering::Acquire)
    }

    /// How many events the snapshotter has taken from the log past its newest
    /// snapshot ([`last_snapshot`](Self::last_snapshot)): what a restart from
    /// that snapshot would replay, as far as the snapshotter has followed.
    /// Two atomic loads, for a gauge such as `swarm_snapshot_lag_events`.
    pub fn lag_events(&self) -> u64 {
        let followed = self.shared.followed.load(Ordering::Acquire);
        followed.saturating_sub(self.last_snapshot())
    }

    /// How many failures this snapshotter has met so far (each was retried).
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// Stops following, saves a final snapshot if needed, and returns the state.
    ///
    /// A snapshot in flight is finished first. A failure of the final save is
    /// counted and reported like any other; the state is returned all the same.
    pub async fn stop(mut self) -> Result<SystemState> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::io(
                std::path::PathBuf::new(),
                std::io::Error::other(format!("the snapshotter task failed: {e}")),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::MemoryStore;
    use swarm_core::AgentId;
    use swarm_core::event::AgentAvailable;

    /// On a current-thread runtime every task runs on the thread that called
    /// `block_on`; a snapshot encoded on it would stall them all.
    #[test]
    fn snapshots_are_encoded_off_the_runtime_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let runtime_thread = std::thread::current().id();
        let encoded_on = runtime.block_on(async {
            let store = Arc::new(MemoryStore::new());
            let snapshotter = Snapshotter::spawn(Arc::clone(&store), 5);
            let events = (0..12)
                .map(|n| {
                    AgentAvailable {
                        agent_id: AgentId::new(n),
                    }
                    .into()
                })
                .collect();
            store.append(events, None).await.unwrap();
            for _ in 0..1000 {
                if snapshotter.last_snapshot() >= 5 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(
                snapshotter.last_snapshot() >= 5,
                "no snapshot after 5 events"
            );
            let progress = Arc::clone(&snapshotter.shared);
            let state = snapshotter.stop().await.unwrap();
            assert_eq!(state.last_seq(), 12);
            progress.encoded_on.lock().clone()
        });
        // At 5, then at 10 or coalesced at 12, then at 12 on stop if needed.
        assert!((2..=3).contains(&encoded_on.len()), "{encoded_on:?}");
        assert!(
            encoded_on.iter().all(|t| *t != runtime_thread),
            "a snapshot was encoded on the runtime's thread"
        );
    }

    #[test]
    fn the_retry_delay_doubles_from_the_minimum_up_to_the_cap() {
        assert_eq!(retry_delay(1), SNAPSHOT_RETRY_MIN);
        assert_eq!(retry_delay(2), SNAPSHOT_RETRY_MIN * 2);
        assert_eq!(retry_delay(3), SNAPSHOT_RETRY_MIN * 4);
        assert_eq!(retry_delay(9), SNAPSHOT_RETRY_MIN * 256);
        assert_eq!(retry_delay(10), SNAPSHOT_RETRY_MAX);
        assert_eq!(retry_delay(u32::MAX), SNAPSHOT_RETRY_MAX);
    }
}
