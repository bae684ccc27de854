//! Subscriptions: catch-up from the log, then live batches, with no gap and no
//! duplicate at the seam. Shared by every store of this crate.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::store::{EventStream, SeqRange, StoredEvent};

/// How many batches a live subscriber may fall behind before it re-reads the log.
pub(crate) const LIVE_CAPACITY: usize = 1024;

/// A batch the writer made readable, published to live subscribers.
///
/// `events` may be empty when nobody was subscribed as the batch was formed:
/// a subscriber then reads the range from the log.
#[derive(Debug)]
pub(crate) struct LiveBatch {
    pub(crate) range: SeqRange,
    pub(crate) events: Vec<StoredEvent>,
}

/// What a subscription needs from a store.
pub(crate) trait LogSource: Send + Sync + 'static {
    /// The last sequence readers may see now.
    fn visible(&self) -> u64;
    /// The events `from..=to` (a bounded read).
    fn read_range(self: &Arc<Self>, from: u64, to: u64) -> EventStream;
}

enum Phase {
    Start,
    CatchUp(EventStream),
    Live,
    Done,
}

struct Sub<S> {
    source: Arc<S>,
    rx: Option<broadcast::Receiver<Arc<LiveBatch>>>,
    next: u64,
    phase: Phase,
    pending: VecDeque<StoredEvent>,
}

/// A subscription stream. `rx` must be taken from the store's live channel
/// before this call reads `visible()` (it does so at its first poll), which is
/// what closes the seam: the writer makes a batch visible before publishing it.
pub(crate) fn subscribe<S: LogSource>(
    source: Arc<S>,
    rx: Option<broadcast::Receiver<Arc<LiveBatch>>>,
    from_seq: u64,
) -> EventStream {
    let sub = Sub {
        source,
        rx,
        next: from_seq.max(1),
        phase: Phase::Start,
        pending: VecDeque::new(),
    };
    futures::stream::unfold(sub, |mut sub| async move {
        let item = sub.step().await?;
        Some((item, sub))
    })
    .boxed()
}

impl<S: LogSource> Sub<S> {
    fn catch_up_to(&mut self, to: u64) {
        self.phase = if to >= self.next {
            Phase::CatchUp(self.source.read_range(self.next, to))
        } else {
            Phase::Live
        };
    }

    async fn step(&mut self) -> Option<crate::Result<StoredEvent>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(Ok(e));
            }
            match &mut self.phase {
                Phase::Done => return None,
                Phase::Start => {
                    let to = self.source.visible();
                    self.catch_up_to(to);
                }
                Phase::CatchUp(stream) => match stream.next().await {
                    Some(Ok(e)) => {
                        if e.seq < self.next {
                            continue;
                        }
                        self.next = e.seq + 1;
                        return Some(Ok(e));
                    }
                    Some(Err(e)) => {
                        self.phase = Phase::Done;
                        return Some(Err(e));
                    }
                    None => self.phase = Phase::Live,
                },
                Phase::Live => {
                    let Some(rx) = self.rx.as_mut() else {
                        // The store was closed before we subscribed: drain and end.
                        let to = self.source.visible();
                        if to >= self.next {
                            self.catch_up_to(to);
                        } else {
                            self.phase = Phase::Done;
                        }
                        continue;
                    };
                    match rx.recv().await {
                        Ok(batch) => {
                            if batch.range.end <= self.next {
                                continue;
                            }
                            if batch.range.start > self.next || batch.events.is_empty() {
                                // A gap (or a batch formed with no subscriber): read it.
                                self.catch_up_to(batch.range.end - 1);
                                continue;
                            }
                            for e in &batch.events {
                                if e.seq >= self.next {
                                    self.pending.push_back(e.clone());
                                }
                            }
                            self.next = batch.range.end;
                        }
                        Err(RecvError::Lagged(_)) => {
                            let to = self.source.visible();
                            self.catch_up_to(to);
                        }
                        Err(RecvError::Closed) => {
                            self.rx = None;
                        }
                    }
                }
            }
        }
    }
}
