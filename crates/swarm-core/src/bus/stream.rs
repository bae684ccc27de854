//! The async side of the bus.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_core::stream::BoxStream;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::event::Event;

/// A subscriber fell behind and missed `missed` events.
///
/// The stream continues with the oldest event still buffered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lagged {
    /// How many events were skipped.
    pub missed: u64,
}

impl fmt::Display for Lagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event subscriber fell behind and missed {} events: consume faster or raise the stream capacity",
            self.missed
        )
    }
}

impl std::error::Error for Lagged {}

/// The events of a bus, from [`EventBus::subscribe`](crate::EventBus::subscribe).
///
/// Yields `Ok(event)` in emit order, `Err(Lagged)` when events were missed, and
/// ends when every handle to the bus is dropped.
pub struct EventStream {
    inner: BoxStream<'static, Result<Event, Lagged>>,
    streams: Arc<AtomicUsize>,
}

impl EventStream {
    pub(super) fn new(receiver: broadcast::Receiver<Event>, streams: Arc<AtomicUsize>) -> Self {
        streams.fetch_add(1, Ordering::Relaxed);
        let inner = futures_util::stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(event) => Some((Ok(event), receiver)),
                Err(RecvError::Lagged(missed)) => Some((Err(Lagged { missed }), receiver)),
                Err(RecvError::Closed) => None,
            }
        });
        EventStream {
            inner: Box::pin(inner),
            streams,
        }
    }
}

impl Stream for EventStream {
    type Item = Result<Event, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}
