//! The writer task of a [`NatsStore`](super::NatsStore): serializes this
//! process's appends and pipelines their publishes.
//!
//! Appends queue up on a channel; the writer takes what is queued (up to
//! `max_in_flight` messages), gives each event the next sequence, publishes
//! them all back to back and then awaits the acknowledgements in order.
//!
//! Every publish is fenced: it carries `Nats-Expected-Last-Sequence` (the
//! sequence just before the one it must get) and, after the first message of a
//! round, `Nats-Expected-Last-Msg-Id` (the id of the message published just
//! before it). If another process appends in between, the server refuses the
//! message, and every later message of the round with it, so a round can be
//! cut short but never interleaved with a foreign message. Each message has a
//! `Nats-Msg-Id` unique to this writer, so a publish repeated after a lost
//! acknowledgement is stored once (inside the stream's duplicate window).

use std::collections::VecDeque;
use std::error::Error as _;
use std::time::Duration;

use async_nats::jetstream::context::{Publish, PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::{self, publish::PublishAck};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::error::{actual_from_wrong_last_sequence, nats_error, nats_other};
use crate::error::{Result, StoreError};
use crate::store::SeqRange;

/// How often an unacknowledged publish is repeated (same id) before giving up.
const REPUBLISH_ATTEMPTS: usize = 3;

/// One event, encoded, with its subject.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) subject: String,
    pub(crate) payload: Bytes,
}

#[derive(Debug)]
pub(crate) enum Request {
    Append {
        events: Vec<Encoded>,
        expected: Option<u64>,
        reply: oneshot::Sender<Result<SeqRange>>,
    },
    /// Answered once every request queued before it is answered.
    Flush(oneshot::Sender<()>),
}

pub(crate) struct Writer {
    pub(crate) js: jetstream::Context,
    pub(crate) stream: String,
    /// Names the stream in errors.
    pub(crate) what: String,
    /// Prefix of this writer's message ids (random per store instance).
    pub(crate) writer_id: String,
    pub(crate) next_msg: u64,
    /// The last sequence of the stream as far as this writer knows; `None`
    /// when it must ask the server.
    pub(crate) last: Option<u64>,
    pub(crate) max_in_flight: usize,
}

/// An append taken into a round.
struct Planned {
    first_msg: usize,
    range: SeqRange,
    expected: Option<u64>,
    reply: oneshot::Sender<Result<SeqRange>>,
    events: Vec<Encoded>,
}

struct InFlight {
    id: String,
    seq: u64,
    subject: String,
    payload: Bytes,
    ack: Option<PublishAckFuture>,
}

/// What happened to one message of a round.
enum Fate {
    Stored,
    /// Refused because the stream did not end where expected: nothing of it is stored.
    Conflict {
        actual: Option<u64>,
    },
    /// Nothing is known (timeouts, lost connection).
    Unknown(StoreError),
}

impl Writer {
    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        let mut queue: VecDeque<Request> = VecDeque::new();
        loop {
            if queue.is_empty() {
                match rx.recv().await {
                    Some(r) => queue.push_back(r),
                    None => return,
                }
            }
            while let Ok(r) = rx.try_recv() {
                queue.push_back(r);
            }
            self.round(&mut queue).await;
        }
    }

    async fn refresh_last(&mut self) -> Result<u64> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| nats_other(&self.what, e))?;
        let last = stream.cached_info().state.last_sequence;
        self.last = Some(last);
        Ok(last)
    }

    /// Plans, publishes and settles one round taken from the front of `queue`.
    async fn round(&mut self, queue: &mut VecDeque<Request>) {
        let committed = match self.last {
            Some(last) => last,
            None => match self.refresh_last().await {
                Ok(last) => last,
                Err(e) => {
                    fail_all(queue, &e);
                    return;
                }
            },
        };
        // Plan: sequences for as many queued appends as fit in the round.
        let mut planned: Vec<Planned> = Vec::new();
        let mut flushes = Vec::new();
        let mut next_seq = committed + 1;
        let mut messages = 0usize;
        let mut refreshed = false;
        while let Some(request) = queue.front() {
            if let Request::Append { events, .. } = request
                && messages > 0
                && messages + events.len() > self.max_in_flight
            {
                break;
            }
            let Some(request) = queue.pop_front() else {
                break;
            };
            match request {
                Request::Flush(reply) => flushes.push(reply),
                Request::Append {
                    events,
                    expected,
                    reply,
                } => {
                    let planned_last = next_seq - 1;
                    if let Some(expected) = expected
                        && expected != planned_last
                    {
                        // Our view may be stale (another process appended):
                        // ask the server before calling it a conflict.
                        let actual = if planned.is_empty() && !refreshed {
                            refreshed = true;
                            match self.refresh_last().await {
                                Ok(last) => {
                                    next_seq = last + 1;
                                    last
                                }
                                Err(e) => {
                                    let _ = reply.send(Err(e));
                                    continue;
                                }
                            }
                        } else {
                            planned_last
                        };
                        if expected != actual {
                            let _ = reply.send(Err(StoreError::Conflict { expected, actual }));
                            continue;
                        }
                    }
                    let len = events.len() as u64;
                    let range = SeqRange::new(next_seq, next_seq + len);
                    next_seq += len;
                    planned.push(Planned {
                        first_msg: messages,
                        range,
                        expected,
                        reply,
                        events,
                    });
                    messages += len as usize;
                }
            }
        }

        // Publish everything back to back.
        let mut flight: Vec<InFlight> = Vec::with_capacity(messages);
        let mut seq = planned.first().map_or(next_seq, |p| p.range.start);
        for p in &mut planned {
            for e in p.events.drain(..) {
                self.next_msg += 1;
                flight.push(InFlight {
                    id: format!("{}-{}", self.writer_id, self.next_msg),
                    seq,
                    subject: e.subject,
                    payload: e.payload,
                    ack: None,
                });
                seq += 1;
            }
        }
        let mut send_error = None;
        for i in 0..flight.len() {
            let publish = self.publish_of(&flight, i);
            match self
                .js
                .send_publish(flight[i].subject.clone(), publish)
                .await
            {
                Ok(ack) => flight[i].ack = Some(ack),
                Err(e) => {
                    send_error = Some(nats_other(&self.what, e));
                    break;
                }
            }
        }

        // Settle: the fate of each message, in order, stopping at the first failure.
        let mut fates: Vec<Fate> = Vec::with_capacity(flight.len());
        let mut previous_clean = true;
        for i in 0..flight.len() {
            let Some(ack) = flight[i].ack.take() else {
                let e = send_error
                    .take()
                    .unwrap_or_else(|| nats_other(&self.what, "publish was not sent"));
                fates.push(Fate::Unknown(e));
                break;
            };
            // A refusal right after a message stored by its own first publish
            // is a real conflict; right after a repeated one it may only mean
            // that this message arrived before its predecessor was stored.
            let (fate, first_try) = match ack.await {
                Ok(ack) => (self.check_ack(&flight[i], &ack), true),
                Err(e) if previous_clean && is_wrong_last(&e) => (
                    Fate::Conflict {
                        actual: actual_of(&e),
                    },
                    true,
                ),
                Err(_) => (self.republish(&flight, i).await, false),
            };
            previous_clean = first_try && matches!(fate, Fate::Stored);
            let stop = !matches!(fate, Fate::Stored);
            fates.push(fate);
            if stop {
                break;
            }
        }
        let stored = fates
            .iter()
            .take_while(|f| matches!(f, Fate::Stored))
            .count();
        let failure = fates.into_iter().nth(stored);
        let conflict_actual = match &failure {
            Some(Fate::Conflict { actual }) => Some(*actual),
            _ => None,
        };
        if failure.is_none() {
            if let Some(p) = planned.last() {
                self.last = Some(p.range.end - 1);
            }
        } else {
            self.last = None;
        }
        let failure_error = match failure {
            Some(Fate::Unknown(e)) => Some(e),
            _ => None,
        };

        // Answer each append.
        let mut retry: Vec<Request> = Vec::new();
        for p in planned {
            let len = p.range.len() as usize;
            let end_msg = p.first_msg + len;
            if end_msg <= stored {
                let _ = p.reply.send(Ok(p.range));
                continue;
            }
            if let Some(e) = &failure_error {
                let _ = p.reply.send(Err(clone_error(e)));
                continue;
            }
            if p.first_msg < stored {
                // Cut in the middle by another writer: the head is stored.
                let _ = p.reply.send(Err(StoreError::Conflict {
                    expected: p.range.start - 1,
                    actual: conflict_actual.flatten().unwrap_or(p.range.start - 1),
                }));
                continue;
            }
            match p.expected {
                // Nothing of it is stored: the caller asked for a position it did not get.
                Some(expected) => {
                    let actual = match conflict_actual.flatten() {
                        Some(actual) => actual,
                        None => self.refresh_last().await.unwrap_or(expected),
                    };
                    let _ = p.reply.send(Err(StoreError::Conflict { expected, actual }));
                }
                // No position asked for: try again at the new end of the log.
                None => retry.push(Request::Append {
                    events: flight_events(&flight, p.first_msg, len),
                    expected: None,
                    reply: p.reply,
                }),
            }
        }
        for r in retry.into_iter().rev() {
            queue.push_front(r);
        }
        if queue.is_empty() {
            for f in flushes {
                let _ = f.send(());
            }
        } else {
            // Retries go first; the flushes wait for them.
            for f in flushes {
                queue.push_back(Request::Flush(f));
            }
        }
    }

    fn publish_of(&self, flight: &[InFlight], i: usize) -> Publish {
        let m = &flight[i];
        let mut publish = Publish::build()
            .payload(m.payload.clone())
            .message_id(&m.id)
            .expected_last_sequence(m.seq - 1);
        if i > 0 {
            publish = publish.expected_last_message_id(&flight[i - 1].id);
        }
        publish
    }

    fn check_ack(&self, m: &InFlight, ack: &PublishAck) -> Fate {
        if ack.sequence == m.seq {
            Fate::Stored
        } else {
            Fate::Unknown(nats_error(
                &self.what,
                std::io::ErrorKind::InvalidData,
                format!(
                    "message {} was stored at sequence {} instead of {} (duplicate: {}): is another program publishing to the swarm's subjects?",
                    m.id, ack.sequence, m.seq, ack.duplicate
                ),
            ))
        }
    }

    /// Repeats a publish whose outcome is unknown, with the same id and
    /// expectations: the duplicate window makes this safe.
    async fn republish(&self, flight: &[InFlight], i: usize) -> Fate {
        let mut last_error = None;
        for attempt in 0..REPUBLISH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let publish = self.publish_of(flight, i);
            let ack = match self
                .js
                .send_publish(flight[i].subject.clone(), publish)
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match ack {
                Ok(ack) => return self.check_ack(&flight[i], &ack),
                Err(e) if is_wrong_last(&e) => {
                    return Fate::Conflict {
                        actual: actual_of(&e),
                    };
                }
                Err(e) => last_error = Some(e),
            }
        }
        let message = last_error.map_or_else(|| "no answer".to_string(), |e| e.to_string());
        Fate::Unknown(nats_other(
            &self.what,
            format!(
                "the server did not acknowledge event {} ({message}): the outcome of this append is unknown, re-read the log",
                flight[i].seq
            ),
        ))
    }
}

fn flight_events(flight: &[InFlight], from: usize, len: usize) -> Vec<Encoded> {
    flight[from..from + len]
        .iter()
        .map(|m| Encoded {
            subject: m.subject.clone(),
            payload: m.payload.clone(),
        })
        .collect()
}

fn is_wrong_last(e: &PublishError) -> bool {
    matches!(
        e.kind(),
        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId
    )
}

fn actual_of(e: &PublishError) -> Option<u64> {
    if e.kind() != PublishErrorKind::WrongLastSequence {
        return None;
    }
    let text = e.source().map_or_else(|| e.to_string(), |s| s.to_string());
    actual_from_wrong_last_sequence(&text)
}

fn clone_error(e: &StoreError) -> StoreError {
    e.duplicate()
}

fn fail_all(queue: &mut VecDeque<Request>, e: &StoreError) {
    for r in queue.drain(..) {
        match r {
            Request::Append { reply, .. } => {
                let _ = reply.send(Err(clone_error(e)));
            }
            Request::Flush(reply) => {
                let _ = reply.send(());
            }
        }
    }
}
