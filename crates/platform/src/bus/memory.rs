//! The in-process bus of the embedded mode, with the semantics of [`super::amqp::AmqpBus`]:
//! topic routing to every bound queue, per-queue FIFO, prefetch, acknowledgements, delayed
//! retries, a delivery limit counting crashes and retries alike, dead-letter queues, and an
//! unroutable queue so that nothing published vanishes.
//!
//! [`MemoryBus::new`] keeps messages in memory only. [`MemoryBus::durable`] also keeps every
//! queued message as a row of `pos_bus_messages` in the service's database, written before
//! `publish` returns (its "confirm"), so a process killed at any moment loses nothing: on the
//! next start the rows are loaded and delivered again. One process per database: the rows are
//! the truth, the in-memory queues are their index.
//!
//! One writer task writes the journal, in batches: each transaction holds whatever was queued
//! while the previous one was being written. Publishers and deliveries wait for their batch
//! (a publish is confirmed, and a delivery counted before its handler runs, only once written);
//! acknowledgements do not wait. Acknowledgements are thus the one exception to "written before
//! it takes effect": an acknowledged message leaves memory at once and its row is deleted by a
//! later batch. A process killed in between gets those messages back on its next start, as
//! redeliveries, which every consumer's inbox absorbs: at least once, and nothing lost.
//! Retries and dead-lettering change where a message lives and are written before they take
//! effect. [`MemoryBus::close`] writes what is still queued.
//!
//! Ordering: a queue hands out messages by (available-at, sequence), so new messages are FIFO,
//! a message returned unsettled keeps its place, and a retried message joins the tail when its
//! delay has passed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, Connection, Row};
use tokio::sync::{Notify, oneshot};

use super::{
    Bus, BusError, DeadLetter, DeadLetterAction, DeadLetterSelection, Delivery, Disposition, Envelope,
    HEADER_DEATH_REASON, HEADER_RETRY_COUNT, QueueSpec, Settle,
};
use crate::db::{Db, Dialect, RowExt, now_micros};

/// Where messages go when no queue binds their routing key; named like the AMQP adapter's
/// unroutable queue for the default `pos.events` exchange.
pub const UNROUTABLE_QUEUE: &str = "pos.events.unroutable";

/// The in-process bus. Dropping it (or [`MemoryBus::close`]) ends every consume stream.
pub struct MemoryBus {
    inner: Arc<Inner>,
}

impl Default for MemoryBus {
    fn default() -> MemoryBus {
        MemoryBus::new()
    }
}

impl MemoryBus {
    /// A volatile bus: everything queued is lost with the process.
    pub fn new() -> MemoryBus {
        MemoryBus {
            inner: Arc::new(Inner { state: Mutex::new(State::new()), store: None, closed: AtomicBool::new(false) }),
        }
    }

    /// A bus whose queues live in `db` (tables `pos_bus_queues` and `pos_bus_messages`, created
    /// when missing, outside the platform migrations). Loads the queues declared and the messages
    /// pending when the previous process stopped; messages that were in flight are delivered
    /// again, counted as redeliveries.
    pub async fn durable(db: Db) -> Result<MemoryBus, BusError> {
        let store = Arc::new(Store::new(db));
        store.init().await.map_err(store_error)?;
        let specs = store.load_specs().await.map_err(store_error)?;
        let messages = store.load_messages().await.map_err(store_error)?;
        let mut state = State::new();
        for spec in specs {
            state.declare(spec);
        }
        let pending = messages.len();
        for (queue, message) in messages {
            state.next_id = state.next_id.max(message.id + 1);
            state.queue(&queue).push(message);
        }
        tracing::info!(queues = state.queues.len(), pending, "memory bus loaded from database");
        let inner =
            Arc::new(Inner { state: Mutex::new(state), store: Some(store.clone()), closed: AtomicBool::new(false) });
        let _ = store.bus.set(Arc::downgrade(&inner));
        tokio::spawn(store.write_behind());
        Ok(MemoryBus { inner })
    }

    /// The queue receiving messages that no binding matched.
    pub fn unroutable_queue(&self) -> &str {
        UNROUTABLE_QUEUE
    }

    /// Write transactions the durable bus has committed (publishes, batches of acknowledgements
    /// and delivery counts, retries, dead-lettering); 0 for a volatile bus. For measurements.
    pub fn journal_transactions(&self) -> u64 {
        self.inner.store.as_ref().map_or(0, |store| store.transactions.load(Ordering::Relaxed))
    }

    /// Ends every consume stream; later calls fail with [`BusError::Closed`]. Deliveries already
    /// handed out can still be settled. Writes the acknowledgements not written yet, so that a
    /// clean stop redelivers nothing on the next start.
    pub async fn close(&self) {
        self.inner.close();
        if let Some(store) = &self.inner.store
            && let Err(error) = store.flush().await
        {
            tracing::warn!(%error, "memory bus could not write the last acknowledgements; those messages come back on the next start");
        }
    }
}

impl Drop for MemoryBus {
    /// Dropping cannot wait for a write: the acknowledgements not written yet are left to the
    /// background writer, which writes them once the last delivery is settled (see
    /// `Drop for Inner`) unless the runtime stops first. [`MemoryBus::close`] waits for them.
    fn drop(&mut self) {
        self.inner.close();
    }
}

struct Inner {
    state: Mutex<State>,
    store: Option<Arc<Store>>,
    closed: AtomicBool,
}

impl Drop for Inner {
    /// Nothing can queue a write any more (deliveries hold `Inner` too): the writer writes what
    /// is left and stops.
    fn drop(&mut self) {
        if let Some(store) = &self.store {
            store.stop();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a queue half-updated (every update is a
        // single insert or remove), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for queue in self.lock().queues.values() {
            queue.signal.notify_waiters();
        }
    }

    fn ensure_open(&self) -> Result<(), BusError> {
        if self.closed.load(Ordering::SeqCst) { Err(BusError::Closed) } else { Ok(()) }
    }

    /// Puts published messages on their queues (once stored, for the durable bus).
    fn arrive(&self, rows: Vec<(Arc<str>, Message)>) {
        let mut state = self.lock();
        for (queue, message) in rows {
            if &*queue == UNROUTABLE_QUEUE {
                tracing::warn!(routing_key = %message.envelope.routing_key, message_id = %message.envelope.message_id, "no queue bound; message kept in the unroutable queue");
            }
            state.queue(&queue).push(message);
        }
    }
}

#[derive(Clone)]
struct Message {
    id: i64,
    envelope: Envelope,
    /// Deliveries of this message that ended unsettled (dropped, or the process died); in a
    /// dead-letter queue, the deliveries made before it was dead-lettered.
    redeliveries: u32,
    /// Microseconds since the Unix epoch; later than now while a retry waits; in a dead-letter
    /// queue, when it was dead-lettered.
    available_at: i64,
}

#[derive(Default)]
struct Queue {
    /// The consumer's spec; `None` for dead-letter and unroutable queues, which bind nothing.
    spec: Option<QueueSpec>,
    ready: BTreeMap<(i64, i64), Message>,
    unacked: HashMap<i64, Message>,
    /// Wakes consumers when a message arrives or a prefetch slot frees up.
    signal: Arc<Notify>,
}

impl Queue {
    fn push(&mut self, message: Message) {
        self.ready.insert((message.available_at, message.id), message);
        self.signal.notify_waiters();
    }

    fn due(&self, now: i64) -> usize {
        self.ready.range(..=(now, i64::MAX)).count()
    }
}

/// Routing keys remembered at most; routing keys are `<event>.<region>`, so far fewer in
/// practice. Past this (a publisher inventing keys), the cache starts over rather than growing.
const ROUTES_CACHED: usize = 4096;

type Targets = Arc<[Arc<str>]>;

struct State {
    queues: HashMap<String, Queue>,
    /// The queues each routing key went to: matching every binding of every queue on every
    /// publish would cost more than the rest of routing. Cleared whenever a binding changes.
    routes: HashMap<String, Targets>,
    /// Never reused within a process, not even after `delete_declared`: a deletion still waiting
    /// for the writer must not hit a newer message.
    next_id: i64,
    /// The latest publish time handed out: publish times never go back, even if the clock does,
    /// so FIFO order holds.
    last_publish: i64,
}

impl State {
    fn new() -> State {
        let mut state = State { queues: HashMap::new(), routes: HashMap::new(), next_id: 1, last_publish: 0 };
        state.queue(UNROUTABLE_QUEUE);
        state
    }

    fn publish_time(&mut self) -> i64 {
        self.last_publish = now_micros().max(self.last_publish);
        self.last_publish
    }

    fn queue(&mut self, name: &str) -> &mut Queue {
        // Looked up before inserting: the name is allocated only for a new queue, not on every
        // call (this runs for each message taken, settled and published).
        if !self.queues.contains_key(name) {
            self.queues.insert(name.to_owned(), Queue::default());
        }
        self.queues.get_mut(name).expect("the queue was just inserted")
    }

    fn declare(&mut self, spec: QueueSpec) {
        self.queue(&spec.dead_letter_queue());
        let name = spec.name.clone();
        self.queue(&name).spec = Some(spec);
        self.routes.clear();
    }

    /// `spec` with the bindings the queue has already: declaring adds bindings, as on a broker;
    /// only [`Bus::remove_stale_bindings`] takes them away.
    fn with_current_bindings(&self, spec: &QueueSpec) -> QueueSpec {
        let mut merged = spec.clone();
        if let Some(current) = self.queues.get(&spec.name).and_then(|queue| queue.spec.as_ref()) {
            for pattern in &current.bindings {
                if !merged.bindings.contains(pattern) {
                    merged.bindings.push(pattern.clone());
                }
            }
        }
        merged
    }

    /// Every queue bound to `routing_key`, or the unroutable queue.
    fn route(&mut self, routing_key: &str) -> Targets {
        if let Some(targets) = self.routes.get(routing_key) {
            return targets.clone();
        }
        let mut targets: Vec<Arc<str>> = self
            .queues
            .iter()
            .filter(|(_, queue)| {
                queue
                    .spec
                    .as_ref()
                    .is_some_and(|spec| spec.bindings.iter().any(|b| super::topic_matches(b, routing_key)))
            })
            .map(|(name, _)| Arc::from(name.as_str()))
            .collect();
        if targets.is_empty() {
            targets.push(Arc::from(UNROUTABLE_QUEUE));
        }
        if self.routes.len() >= ROUTES_CACHED {
            self.routes.clear();
        }
        let targets: Targets = targets.into();
        self.routes.insert(routing_key.to_owned(), targets.clone());
        targets
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<Result<(), BusError>> {
        if self.inner.ensure_open().is_err() {
            return envelopes.iter().map(|_| Err(BusError::Closed)).collect();
        }
        let rows: Vec<(Arc<str>, Message)> = {
            let mut state = self.inner.lock();
            let now = state.publish_time();
            let mut rows = Vec::with_capacity(envelopes.len());
            for envelope in envelopes {
                for queue in state.route(&envelope.routing_key).iter() {
                    let id = state.next_id;
                    state.next_id += 1;
                    let message = Message { id, envelope: envelope.clone(), redeliveries: 0, available_at: now };
                    rows.push((queue.clone(), message));
                }
            }
            rows
        };
        match &self.inner.store {
            // The writer puts them on their queues when it has stored them, before this returns.
            Some(store) => {
                if let Err(error) = store.insert(rows).await {
                    tracing::warn!(%error, count = envelopes.len(), "memory bus could not store published messages");
                    return envelopes.iter().map(|_| Err(store_error(&error))).collect();
                }
            }
            None => self.inner.arrive(rows),
        }
        envelopes.iter().map(|_| Ok(())).collect()
    }

    async fn declare(&self, spec: &QueueSpec) -> Result<(), BusError> {
        self.inner.ensure_open()?;
        let declared = self.inner.lock().with_current_bindings(spec);
        if let Some(store) = &self.inner.store {
            store.save_spec(&declared).await.map_err(store_error)?;
        }
        self.inner.lock().declare(declared);
        Ok(())
    }

    async fn remove_stale_bindings(&self, spec: &QueueSpec) -> Result<Vec<String>, BusError> {
        self.inner.ensure_open()?;
        let Some(mut current) = self.inner.lock().queues.get(&spec.name).and_then(|queue| queue.spec.clone()) else {
            return Err(BusError::Other(format!("queue {} is not declared", spec.name)));
        };
        let (kept, stale): (Vec<String>, Vec<String>) =
            current.bindings.into_iter().partition(|pattern| spec.bindings.contains(pattern));
        if stale.is_empty() {
            return Ok(stale);
        }
        current.bindings = kept;
        // Stored before routing changes, as in `declare`: the stored spec is what the next
        // process routes by.
        if let Some(store) = &self.inner.store {
            store.save_spec(&current).await.map_err(store_error)?;
        }
        self.inner.lock().declare(current);
        Ok(stale)
    }

    async fn consume(&self, spec: &QueueSpec) -> Result<BoxStream<'static, Delivery>, BusError> {
        self.declare(spec).await?;
        let consumer = Consumer {
            inner: self.inner.clone(),
            queue: spec.name.as_str().into(),
            dead_letter_queue: spec.dead_letter_queue().into(),
            prefetch: usize::from(spec.prefetch),
            delivery_limit: spec.delivery_limit.max(1),
            in_flight: Arc::new(AtomicUsize::new(0)),
        };
        Ok(stream::unfold(consumer, |consumer| async move {
            let delivery = consumer.next().await?;
            Some((delivery, consumer))
        })
        .boxed())
    }

    async fn flush(&self) -> Result<(), BusError> {
        match &self.inner.store {
            Some(store) => store.flush().await.map_err(store_error),
            None => Ok(()),
        }
    }

    async fn delete_declared(&self) -> Result<(), BusError> {
        self.inner.ensure_open()?;
        if let Some(store) = &self.inner.store {
            store.delete_all().await.map_err(store_error)?;
        }
        let mut state = self.inner.lock();
        let fresh = State { next_id: state.next_id, last_publish: state.last_publish, ..State::new() };
        *state = fresh;
        Ok(())
    }

    async fn queue_depth(&self, queue: &str) -> Result<u64, BusError> {
        let state = self.inner.lock();
        let queue = state.queues.get(queue).ok_or_else(|| BusError::Other(format!("queue {queue} does not exist")))?;
        Ok(queue.due(now_micros()) as u64)
    }

    async fn drain_dead_letters(&self, spec: &QueueSpec, max: usize) -> Result<Vec<Envelope>, BusError> {
        let dead_letter_queue = spec.dead_letter_queue();
        let taken: Vec<Message> = {
            let mut state = self.inner.lock();
            let Some(queue) = state.queues.get_mut(&dead_letter_queue) else {
                return Ok(Vec::new());
            };
            std::iter::from_fn(|| queue.ready.pop_first().map(|(_, message)| message)).take(max).collect()
        };
        if let Some(store) = &self.inner.store {
            let ids: Vec<i64> = taken.iter().map(|m| m.id).collect();
            if let Err(error) = store.delete(&ids).await {
                let mut state = self.inner.lock();
                let queue = state.queue(&dead_letter_queue);
                for message in taken {
                    queue.push(message);
                }
                return Err(store_error(error));
            }
        }
        Ok(taken.into_iter().map(|m| m.envelope).collect())
    }

    async fn peek_dead_letters(&self, spec: &QueueSpec, max: usize) -> Result<Vec<DeadLetter>, BusError> {
        let state = self.inner.lock();
        let Some(queue) = state.queues.get(&spec.dead_letter_queue()) else {
            return Ok(Vec::new());
        };
        Ok(queue
            .ready
            .values()
            .take(max)
            .map(|message| DeadLetter {
                envelope: message.envelope.clone(),
                dead_lettered_at: DateTime::<Utc>::from_timestamp_micros(message.available_at),
                attempts: message.redeliveries,
            })
            .collect())
    }

    async fn settle_dead_letters(
        &self,
        spec: &QueueSpec,
        selection: DeadLetterSelection,
        action: DeadLetterAction,
    ) -> Result<Vec<Envelope>, BusError> {
        self.inner.ensure_open()?;
        let dead_letter_queue = spec.dead_letter_queue();
        // Taken out under the lock, so no other call acts on them meanwhile; put back on failure.
        let (taken, now) = {
            let mut state = self.inner.lock();
            let now = state.publish_time();
            let Some(queue) = state.queues.get_mut(&dead_letter_queue) else {
                return Ok(Vec::new());
            };
            let keys: Vec<(i64, i64)> = queue
                .ready
                .iter()
                .filter(|(_, message)| selection.selects(message.envelope.message_id))
                .map(|(key, _)| *key)
                .collect();
            let taken: Vec<Message> = keys.iter().filter_map(|key| queue.ready.remove(key)).collect();
            (taken, now)
        };
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let envelopes: Vec<Envelope> = taken.iter().map(|m| m.envelope.clone()).collect();
        let (revived, gone): (Vec<Message>, Vec<i64>) = match action {
            DeadLetterAction::Drop => (Vec::new(), taken.iter().map(|m| m.id).collect()),
            DeadLetterAction::Replay => {
                let mut seen = HashSet::new();
                let mut revived = Vec::new();
                let mut gone = Vec::new();
                for message in &taken {
                    if seen.insert(message.envelope.message_id) {
                        // A first delivery again: no death, no retries, no redeliveries counted.
                        revived.push(Message {
                            id: message.id,
                            envelope: message.envelope.revived(),
                            redeliveries: 0,
                            available_at: now,
                        });
                    } else {
                        gone.push(message.id);
                    }
                }
                (revived, gone)
            }
        };
        if let Some(store) = &self.inner.store
            && let Err(error) = store.move_dead_letters(&spec.name, &revived, &gone).await
        {
            let mut state = self.inner.lock();
            let queue = state.queue(&dead_letter_queue);
            for message in taken {
                queue.push(message);
            }
            return Err(store_error(error));
        }
        let mut state = self.inner.lock();
        let queue = state.queue(&spec.name);
        for message in revived {
            queue.push(message);
        }
        Ok(envelopes)
    }
}

/// One consume stream: a competing consumer of its queue with its own prefetch.
struct Consumer {
    inner: Arc<Inner>,
    queue: Arc<str>,
    dead_letter_queue: Arc<str>,
    /// 0 means unlimited, as in AMQP.
    prefetch: usize,
    delivery_limit: u32,
    in_flight: Arc<AtomicUsize>,
}

enum Next {
    Take(Message),
    Until(i64),
    Signal,
}

impl Consumer {
    async fn next(&self) -> Option<Delivery> {
        loop {
            let signal = self.inner.lock().queue(&self.queue).signal.clone();
            let notified = signal.notified();
            tokio::pin!(notified);
            // Registered before looking at the queue, so a push in between still wakes us.
            notified.as_mut().enable();
            if self.inner.closed.load(Ordering::SeqCst) {
                return None;
            }
            let now = now_micros();
            let next = {
                let mut state = self.inner.lock();
                let queue = state.queue(&self.queue);
                if self.prefetch > 0 && self.in_flight.load(Ordering::SeqCst) >= self.prefetch {
                    Next::Signal
                } else {
                    match queue.ready.first_key_value().map(|(key, _)| *key) {
                        Some((at, _)) if at <= now => {
                            let (_, message) = queue.ready.pop_first().expect("first entry exists");
                            queue.unacked.insert(message.id, message.clone());
                            self.in_flight.fetch_add(1, Ordering::SeqCst);
                            Next::Take(message)
                        }
                        Some((at, _)) => Next::Until(at),
                        None => Next::Signal,
                    }
                }
            };
            match next {
                Next::Take(message) => {
                    if let Some(delivery) = self.deliver(message).await {
                        return Some(delivery);
                    }
                }
                Next::Until(at) => {
                    let wait = Duration::from_micros(u64::try_from(at - now).unwrap_or(0));
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Next::Signal => notified.await,
            }
        }
    }

    /// Turns a message taken off the queue into a delivery, or dead-letters it when it has used
    /// up its attempts (retries made plus deliveries that ended unsettled).
    async fn deliver(&self, message: Message) -> Option<Delivery> {
        // Made first: if this future is dropped (the stream was), the guard puts the message back.
        let mut settle = Box::new(MemorySettle {
            inner: self.inner.clone(),
            queue: self.queue.clone(),
            dead_letter_queue: self.dead_letter_queue.clone(),
            id: message.id,
            redeliveries: message.redeliveries,
            delivery_limit: self.delivery_limit,
            in_flight: self.in_flight.clone(),
            handed_out: false,
            settled: false,
        });
        if let Some(store) = &self.inner.store {
            // Counted before the handler runs, so a message that kills the process every time it
            // is handled still reaches its delivery limit; settling restores the count.
            if let Err(error) = store.count_delivery(message.id).await {
                tracing::warn!(%error, queue = %self.queue, "memory bus could not record a delivery attempt");
            }
        }
        let attempt = message.envelope.retry_count() + message.redeliveries + 1;
        if attempt > self.delivery_limit {
            tracing::warn!(queue = %self.queue, message_id = %message.envelope.message_id, attempt, "delivery limit reached; dead-lettering");
            let reason = format!("delivery limit of {} reached", self.delivery_limit);
            if let Err(error) = settle.dead_letter(reason).await {
                tracing::warn!(%error, queue = %self.queue, "memory bus could not dead-letter a message");
            }
            return None;
        }
        settle.handed_out = true;
        Some(Delivery::new(message.envelope, message.redeliveries, settle))
    }
}

struct MemorySettle {
    inner: Arc<Inner>,
    queue: Arc<str>,
    dead_letter_queue: Arc<str>,
    id: i64,
    redeliveries: u32,
    delivery_limit: u32,
    in_flight: Arc<AtomicUsize>,
    /// Whether a handler got it: only then does dropping it count as a redelivery.
    handed_out: bool,
    settled: bool,
}

impl MemorySettle {
    /// The message as delivered, still held in the queue's unacknowledged set.
    fn message(&self) -> Result<Message, BusError> {
        let mut state = self.inner.lock();
        state
            .queue(&self.queue)
            .unacked
            .get(&self.id)
            .cloned()
            .ok_or_else(|| BusError::Other("delivery is no longer held".to_owned()))
    }

    /// Releases the delivery's hold on the queue and its consumer's prefetch slot.
    fn release(&mut self, state: &mut State) -> Option<Message> {
        self.settled = true;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let queue = state.queue(&self.queue);
        queue.signal.notify_waiters();
        queue.unacked.remove(&self.id)
    }

    /// Takes effect in memory at once: the message is never delivered again by this process,
    /// nor counted as a redelivery. Its row is deleted by the writer's next batch; should the
    /// process die first, the next start delivers it again as a redelivery, and the consumer's
    /// inbox absorbs it: at least once, as always, and nothing lost.
    async fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        let inner = self.inner.clone();
        self.release(&mut inner.lock());
        if let Some(store) = &inner.store {
            store.defer_delete(self.id);
        }
        Ok(())
    }

    async fn retry(mut self: Box<Self>, delay: Duration, reason: String) -> Result<(), BusError> {
        let mut message = self.message()?;
        let retries = message.envelope.retry_count();
        if retries + self.redeliveries + 1 >= self.delivery_limit {
            let reason = format!("{reason} (delivery limit of {} reached)", self.delivery_limit);
            return self.dead_letter(reason).await;
        }
        message.envelope.headers.insert(HEADER_RETRY_COUNT.to_owned(), (retries + 1).to_string());
        message.available_at = now_micros().saturating_add(i64::try_from(delay.as_micros()).unwrap_or(i64::MAX));
        if let Some(store) = &self.inner.store {
            store.retry(&message).await.map_err(store_error)?;
        }
        tracing::debug!(queue = %self.queue, message_id = %message.envelope.message_id, retry = retries + 1, delay_ms = delay.as_millis() as u64, %reason, "delivery scheduled for retry");
        let inner = self.inner.clone();
        let mut state = inner.lock();
        self.release(&mut state);
        state.queue(&self.queue).push(message);
        Ok(())
    }

    async fn dead_letter(mut self: Box<Self>, reason: String) -> Result<(), BusError> {
        let mut message = self.message()?;
        // Counted before the reason goes in; this delivery counts when a handler got it.
        let attempts = message.envelope.retry_count() + self.redeliveries + u32::from(self.handed_out);
        message.envelope.headers.insert(HEADER_DEATH_REASON.to_owned(), reason);
        message.redeliveries = attempts;
        message.available_at = now_micros();
        // Written before it takes effect, unlike an acknowledgement: a crash must not undo a
        // move to the dead-letter queue (nor a retry's delay and count, above).
        if let Some(store) = &self.inner.store {
            store.dead_letter(&message, &self.dead_letter_queue).await.map_err(store_error)?;
        }
        let inner = self.inner.clone();
        let mut state = inner.lock();
        self.release(&mut state);
        state.queue(&self.dead_letter_queue).push(message);
        Ok(())
    }
}

#[async_trait]
impl Settle for MemorySettle {
    async fn settle(self: Box<Self>, _envelope: &Envelope, disposition: Disposition) -> Result<(), BusError> {
        match disposition {
            Disposition::Ack => self.ack().await,
            Disposition::Retry { delay, reason } => self.retry(delay, reason).await,
            Disposition::DeadLetter { reason } => self.dead_letter(reason).await,
        }
    }
}

impl Drop for MemorySettle {
    /// Unsettled: back to its place in the queue, one redelivery more, as after a crash. The
    /// durable row already counts this delivery (see `Consumer::deliver`).
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut state = self.inner.lock();
        let queue = state.queue(&self.queue);
        if let Some(mut message) = queue.unacked.remove(&self.id) {
            if self.handed_out {
                message.redeliveries += 1;
            }
            queue.push(message);
        } else {
            queue.signal.notify_waiters();
        }
    }
}

fn store_error(error: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("bus store: {error}"))
}

/// The durable bus's tables. Kept apart from the platform migrations because only the embedded
/// mode uses them; `CREATE TABLE IF NOT EXISTS` is their whole schema history so far.
///
/// Also the journal's writer: published rows and delivery counts (which their publisher and
/// delivery wait for) and acknowledgements (deletions nobody waits for), written together, one
/// transaction per batch, by [`Store::write_behind`].
struct Store {
    db: Db,
    /// The bus whose messages these are: published messages go on its queues once written.
    /// Weak, since the bus holds the store.
    bus: OnceLock<Weak<Inner>>,
    pending: Mutex<Pending>,
    /// Wakes the writer: something was queued, or the bus is gone. One stored permit is enough,
    /// since the writer takes everything queued when it wakes.
    wake: Notify,
    /// Held while a batch is written, so that a flush also waits for the batch in flight; holds
    /// the connection the batches are written on, kept from one batch to the next (taking one
    /// from the pool costs a round trip of its own, to check that it is alive) and given back
    /// after [`CONNECTION_KEPT_IDLE`] without writes, so that a quiet bus does not keep a small
    /// pool one short.
    writing: tokio::sync::Mutex<Option<PoolConnection<Any>>>,
    /// Set when the bus is gone: the writer writes what is left and stops.
    stopped: AtomicBool,
    transactions: AtomicU64,
}

/// Writes queued for the writer's next batch.
#[derive(Default)]
struct Pending {
    /// Rows of published messages, and the messages, which go on their queues once the rows
    /// are written. Put there by the writer rather than by the publisher, so that a publisher
    /// that stops waiting cannot leave a message stored and never delivered.
    published: Vec<NewRow>,
    arrivals: Vec<(Arc<str>, Message)>,
    /// Rows of acknowledged messages, already gone from memory.
    acked: Vec<i64>,
    /// Rows whose delivery is about to start.
    counted: Vec<i64>,
    /// Who waits for the publications and counts of this batch to be written.
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.published.is_empty()
            && self.arrivals.is_empty()
            && self.acked.is_empty()
            && self.counted.is_empty()
            && self.waiters.is_empty()
    }
}

/// A published message's row, as bound to the INSERT.
struct NewRow {
    id: i64,
    queue: String,
    message_id: String,
    routing_key: String,
    type_name: String,
    timestamp_nanos: i64,
    headers: String,
    payload: Vec<u8>,
    redeliveries: i64,
    available_at: i64,
}

/// Ids per `IN (…)` list. Inlined, not bound, so SQLite's limit on variables does not apply;
/// chunks keep each statement a reasonable size.
const IDS_PER_STATEMENT: usize = 500;

/// Rows per multi-row INSERT: ten bound values each, under SQLite's historical limit of 999
/// variables per statement.
const ROWS_PER_INSERT: usize = 90;

const INSERT_COLUMNS: &str = "INSERT INTO pos_bus_messages (id, queue, message_id, routing_key, type_name, \
                              timestamp_nanos, headers, payload, redeliveries, available_at) VALUES ";

/// How long the writer keeps its connection without writing anything.
const CONNECTION_KEPT_IDLE: Duration = Duration::from_millis(100);

/// How long the writer waits before trying a failed batch again.
const WRITE_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// `VALUES` tuples for `rows` rows, numbered from `$1` for PostgreSQL. SQLite gets plain `?`:
/// it looks a numbered parameter up by a linear scan of the statement's names, which makes
/// binding quadratic in the number of parameters.
fn values_sql(sql: &mut String, rows: usize, dialect: Dialect) {
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 1..=10 {
            if column > 1 {
                sql.push_str(", ");
            }
            match dialect {
                Dialect::Sqlite => sql.push('?'),
                Dialect::Postgres => {
                    sql.push('$');
                    sql.push_str(&(row * 10 + column).to_string());
                }
            }
        }
        sql.push(')');
    }
}

fn bind_row<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    row: NewRow,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    query
        .bind(row.id)
        .bind(row.queue)
        .bind(row.message_id)
        .bind(row.routing_key)
        .bind(row.type_name)
        .bind(row.timestamp_nanos)
        .bind(row.headers)
        .bind(row.payload)
        .bind(row.redeliveries)
        .bind(row.available_at)
}

/// The statements counting and deleting `counted` and `acked`, `;`-terminated.
fn counts_and_deletes_sql(sql: &mut String, acked: &[i64], counted: &[i64]) {
    // A row both counted and acknowledged in one batch is deleted anyway.
    for ids in counted.chunks(IDS_PER_STATEMENT) {
        sql.push_str("UPDATE pos_bus_messages SET redeliveries = redeliveries + 1 WHERE id IN (");
        sql.push_str(&id_list(ids));
        sql.push_str(");\n");
    }
    for ids in acked.chunks(IDS_PER_STATEMENT) {
        sql.push_str("DELETE FROM pos_bus_messages WHERE id IN (");
        sql.push_str(&id_list(ids));
        sql.push_str(");\n");
    }
}

/// The batch as one script, one round trip to SQLite's worker thread rather than one per
/// statement: the write lock up front (as `Db::begin` takes it), the rows, the counts, the
/// deletions, the commit. Not kept prepared: with its ids inlined, no two scripts are alike.
/// On an error the transaction may be left open; the caller closes the connection.
async fn write_sqlite(
    connection: &mut PoolConnection<Any>,
    published: Vec<NewRow>,
    acked: &[i64],
    counted: &[i64],
) -> Result<(), sqlx::Error> {
    let mut sql = String::from("BEGIN IMMEDIATE;\n");
    let mut rows = published.len();
    while rows > 0 {
        let chunk = rows.min(ROWS_PER_INSERT);
        sql.push_str(INSERT_COLUMNS);
        values_sql(&mut sql, chunk, Dialect::Sqlite);
        sql.push_str(";\n");
        rows -= chunk;
    }
    counts_and_deletes_sql(&mut sql, acked, counted);
    sql.push_str("COMMIT;");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
    for row in published {
        query = bind_row(query, row);
    }
    query.execute(&mut **connection).await?;
    Ok(())
}

/// PostgreSQL takes one statement per round trip when it binds parameters.
async fn write_postgres(
    connection: &mut PoolConnection<Any>,
    published: Vec<NewRow>,
    acked: &[i64],
    counted: &[i64],
) -> Result<(), sqlx::Error> {
    let mut tx = connection.begin().await?;
    let mut published = published.into_iter().peekable();
    while published.peek().is_some() {
        let chunk: Vec<NewRow> = published.by_ref().take(ROWS_PER_INSERT).collect();
        let mut sql = String::from(INSERT_COLUMNS);
        values_sql(&mut sql, chunk.len(), Dialect::Postgres);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            query = bind_row(query, row);
        }
        query.execute(&mut *tx).await?;
    }
    if !acked.is_empty() || !counted.is_empty() {
        let mut sql = String::new();
        counts_and_deletes_sql(&mut sql, acked, counted);
        // No parameters: the simple protocol, which takes several statements at once.
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// `ids` as an SQL list. They are the bus's own integers, so inlining them is safe (`Any` has no
/// array binds).
/// Deletes the rows `ids` in the transaction, a statement per chunk of ids.
async fn delete_rows(tx: &mut crate::db::Tx, ids: &[i64]) -> Result<(), sqlx::Error> {
    for ids in ids.chunks(IDS_PER_STATEMENT) {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM pos_bus_messages WHERE id IN ({})", id_list(ids))))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn id_list(ids: &[i64]) -> String {
    let mut list = String::with_capacity(ids.len() * 8);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str(&id.to_string());
    }
    list
}

/// A declared queue as stored: enough to route and limit deliveries after a restart, before its
/// consumer declares it again.
#[derive(Serialize, Deserialize)]
struct StoredSpec {
    name: String,
    bindings: Vec<String>,
    delivery_limit: u32,
    retry_delays_ms: Vec<u64>,
    prefetch: u16,
}

impl From<&QueueSpec> for StoredSpec {
    fn from(spec: &QueueSpec) -> StoredSpec {
        StoredSpec {
            name: spec.name.clone(),
            bindings: spec.bindings.clone(),
            delivery_limit: spec.delivery_limit,
            retry_delays_ms: spec.retry_delays.iter().map(|d| d.as_millis() as u64).collect(),
            prefetch: spec.prefetch,
        }
    }
}

impl From<StoredSpec> for QueueSpec {
    fn from(stored: StoredSpec) -> QueueSpec {
        QueueSpec {
            name: stored.name,
            bindings: stored.bindings,
            delivery_limit: stored.delivery_limit,
            retry_delays: stored.retry_delays_ms.into_iter().map(Duration::from_millis).collect(),
            prefetch: stored.prefetch,
        }
    }
}

const CREATE_QUEUES: &str = "CREATE TABLE IF NOT EXISTS pos_bus_queues (name TEXT PRIMARY KEY, spec TEXT NOT NULL)";

// Ids are assigned by the bus (one process per database), so no sequence is needed.
const CREATE_MESSAGES_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS pos_bus_messages (
    id              BIGINT PRIMARY KEY,
    queue           TEXT   NOT NULL,
    message_id      TEXT   NOT NULL,
    routing_key     TEXT   NOT NULL,
    type_name       TEXT   NOT NULL,
    timestamp_nanos BIGINT NOT NULL,
    headers         TEXT   NOT NULL,
    payload         BYTEA  NOT NULL,
    redeliveries    BIGINT NOT NULL,
    available_at    BIGINT NOT NULL
)";

// `INTEGER PRIMARY KEY` makes the id the row's own key in SQLite, where `BIGINT PRIMARY KEY`
// would add an index beside the table: every insert and deletion would write both. Files created
// with the index before still work alike, only with those extra writes.
const CREATE_MESSAGES_SQLITE: &str = "CREATE TABLE IF NOT EXISTS pos_bus_messages (
    id              INTEGER PRIMARY KEY,
    queue           TEXT   NOT NULL,
    message_id      TEXT   NOT NULL,
    routing_key     TEXT   NOT NULL,
    type_name       TEXT   NOT NULL,
    timestamp_nanos BIGINT NOT NULL,
    headers         TEXT   NOT NULL,
    payload         BLOB   NOT NULL,
    redeliveries    BIGINT NOT NULL,
    available_at    BIGINT NOT NULL
)";

impl Store {
    fn new(db: Db) -> Store {
        Store {
            db,
            bus: OnceLock::new(),
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            writing: tokio::sync::Mutex::new(None),
            stopped: AtomicBool::new(false),
            transactions: AtomicU64::new(0),
        }
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        // Every update is a push or a take, so a poisoned lock is still consistent.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The writer: one batch as soon as it is woken, holding everything queued meanwhile. No
    /// fixed delay: under load a batch is what accumulated while the previous one was written;
    /// when idle, a lone acknowledgement is written at once.
    async fn write_behind(self: Arc<Store>) {
        loop {
            // Read before the flush: whatever was queued before the bus went away is in it.
            let stopping = self.stopped.load(Ordering::SeqCst);
            if let Err(error) = self.flush().await {
                if stopping {
                    tracing::warn!(%error, "memory bus could not write the last acknowledgements; those messages come back on the next start");
                    return;
                }
                tracing::warn!(%error, "memory bus could not write its journal; trying again");
                tokio::time::sleep(WRITE_RETRY_PAUSE).await;
                continue;
            }
            if stopping {
                return;
            }
            if tokio::time::timeout(CONNECTION_KEPT_IDLE, self.wake.notified()).await.is_err() {
                *self.writing.lock().await = None;
                self.wake.notified().await;
            }
        }
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Queues the deletion of an acknowledged message's row.
    fn defer_delete(&self, id: i64) {
        self.pending().acked.push(id);
        self.wake.notify_one();
    }

    /// Counts a delivery about to start, in the writer's next batch, and waits until it is
    /// written: counted before the handler runs, so a message that kills the process every time
    /// it is handled still reaches its delivery limit. Deliveries starting at the same time,
    /// on any queue, share one transaction.
    async fn count_delivery(&self, id: i64) -> Result<(), String> {
        self.written(|pending| pending.counted.push(id)).await
    }

    /// Publishes `rows` in the writer's next batch and waits until they are written: the
    /// publisher's confirm. Publishers calling at the same time share one transaction, with the
    /// counts and acknowledgements queued meanwhile; each call's rows are written all or none.
    async fn insert(&self, rows: Vec<(Arc<str>, Message)>) -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut new_rows: Vec<NewRow> = Vec::with_capacity(rows.len());
        let mut previous: Option<&Envelope> = None;
        for (queue, message) in &rows {
            let envelope = &message.envelope;
            // The copies of one message for several queues come one after the other: their
            // headers are serialized once (equal headers serialize alike).
            let headers = match (previous, new_rows.last()) {
                (Some(previous), Some(last)) if previous.headers == envelope.headers => last.headers.clone(),
                _ => headers_json(envelope),
            };
            previous = Some(envelope);
            new_rows.push(NewRow {
                id: message.id,
                queue: queue.to_string(),
                message_id: envelope.message_id.to_string(),
                routing_key: envelope.routing_key.clone(),
                type_name: envelope.type_name.clone(),
                timestamp_nanos: timestamp_nanos(envelope),
                headers,
                payload: envelope.payload.to_vec(),
                redeliveries: i64::from(message.redeliveries),
                available_at: message.available_at,
            });
        }
        self.written(move |pending| {
            pending.published.append(&mut new_rows);
            pending.arrivals.extend(rows);
        })
        .await
    }

    /// Queues what `queue` adds to the next batch and waits until that batch is written.
    async fn written(&self, queue: impl FnOnce(&mut Pending)) -> Result<(), String> {
        let (written, heard) = oneshot::channel();
        {
            let mut pending = self.pending();
            queue(&mut pending);
            pending.waiters.push(written);
        }
        self.wake.notify_one();
        heard.await.unwrap_or_else(|_| Err("the journal writer stopped".to_owned()))
    }

    /// Writes everything queued, after the batch in flight if there is one. On failure the
    /// deletions stay queued for the next batch; publishers hear that their messages were not
    /// stored, and deliveries that their counts were not (they go ahead regardless, with a
    /// warning).
    async fn flush(&self) -> Result<(), sqlx::Error> {
        let mut connection = self.writing.lock().await;
        let mut batch = std::mem::take(&mut *self.pending());
        if batch.is_empty() {
            return Ok(());
        }
        let published = std::mem::take(&mut batch.published);
        let result = self.write_batch(&mut connection, published, &batch.acked, &batch.counted).await;
        match &result {
            Ok(()) => {
                // Without the bus there is nobody to deliver to: the next start loads them.
                if !batch.arrivals.is_empty()
                    && let Some(bus) = self.bus.get().and_then(Weak::upgrade)
                {
                    bus.arrive(std::mem::take(&mut batch.arrivals));
                }
            }
            Err(_) => {
                // It may be the connection that failed: the next batch takes a fresh one.
                *connection = None;
                self.pending().acked.extend_from_slice(&batch.acked);
            }
        }
        let outcome = result.as_ref().map(|_| ()).map_err(ToString::to_string);
        for waiter in batch.waiters {
            let _ = waiter.send(outcome.clone());
        }
        result
    }

    /// One transaction: rows published, then delivery counts, then deletions. In that order
    /// because a message is counted or acknowledged only once its row was written.
    async fn write_batch(
        &self,
        connection: &mut Option<PoolConnection<Any>>,
        published: Vec<NewRow>,
        acked: &[i64],
        counted: &[i64],
    ) -> Result<(), sqlx::Error> {
        let connection = match connection {
            Some(connection) => connection,
            None => connection.insert(self.db.pool().acquire().await?),
        };
        let written = match self.db.dialect() {
            Dialect::Sqlite => write_sqlite(connection, published, acked, counted).await,
            Dialect::Postgres => write_postgres(connection, published, acked, counted).await,
        };
        if written.is_err() {
            // Possibly left inside the transaction: closed rather than handed to anyone else.
            connection.close_on_drop();
        }
        written?;
        self.count_transaction();
        // Counted as `Db::begin` counts its transactions, which this one bypasses to keep its
        // connection.
        metrics::counter!("pos_db_transactions_total", "schema" => self.db.schema().to_owned()).increment(1);
        Ok(())
    }

    fn count_transaction(&self) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
    }

    async fn init(&self) -> Result<(), sqlx::Error> {
        let create_messages = match self.db.dialect() {
            Dialect::Postgres => CREATE_MESSAGES_POSTGRES,
            Dialect::Sqlite => CREATE_MESSAGES_SQLITE,
        };
        sqlx::query(CREATE_QUEUES).execute(self.db.pool()).await?;
        sqlx::query(create_messages).execute(self.db.pool()).await?;
        Ok(())
    }

    /// Everything, queued deletions included: the batch in flight is waited for, so that no
    /// deletion of an earlier message runs after this.
    async fn delete_all(&self) -> Result<(), sqlx::Error> {
        let mut writing = self.writing.lock().await;
        // Given back first: a pool of one connection would otherwise have none for this.
        *writing = None;
        self.pending().acked.clear();
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM pos_bus_messages").execute(&mut *tx).await?;
        sqlx::query("DELETE FROM pos_bus_queues").execute(&mut *tx).await?;
        tx.commit().await?;
        self.count_transaction();
        Ok(())
    }

    async fn load_specs(&self) -> Result<Vec<QueueSpec>, sqlx::Error> {
        let rows = sqlx::query("SELECT spec FROM pos_bus_queues ORDER BY name").fetch_all(self.db.pool()).await?;
        let mut specs = Vec::with_capacity(rows.len());
        for row in rows {
            let text: String = row.try_get("spec")?;
            let stored: StoredSpec = serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(e.into()))?;
            specs.push(stored.into());
        }
        Ok(specs)
    }

    async fn load_messages(&self) -> Result<Vec<(String, Message)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, queue, message_id, routing_key, type_name, timestamp_nanos, headers, payload, \
             redeliveries, available_at FROM pos_bus_messages ORDER BY id",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(|row| Ok((row.try_get("queue")?, message_from_row(row)?))).collect()
    }

    async fn save_spec(&self, spec: &QueueSpec) -> Result<(), sqlx::Error> {
        let text = serde_json::to_string(&StoredSpec::from(spec)).map_err(|e| sqlx::Error::Encode(e.into()))?;
        sqlx::query(
            "INSERT INTO pos_bus_queues (name, spec) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec",
        )
        .bind(spec.name.clone())
        .bind(text)
        .execute(self.db.pool())
        .await?;
        self.count_transaction();
        Ok(())
    }

    /// Deletes at once (taken dead letters), not through the writer: the caller reports the
    /// outcome.
    async fn delete(&self, ids: &[i64]) -> Result<(), sqlx::Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        delete_rows(&mut tx, ids).await?;
        tx.commit().await?;
        self.count_transaction();
        Ok(())
    }

    async fn retry(&self, message: &Message) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE pos_bus_messages SET headers = $1, redeliveries = $2, available_at = $3 WHERE id = $4")
            .bind(headers_json(&message.envelope))
            .bind(i64::from(message.redeliveries))
            .bind(message.available_at)
            .bind(message.id)
            .execute(self.db.pool())
            .await?;
        self.count_transaction();
        Ok(())
    }

    async fn dead_letter(&self, message: &Message, dead_letter_queue: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE pos_bus_messages SET queue = $1, headers = $2, redeliveries = $3, available_at = $4 WHERE id = $5",
        )
        .bind(dead_letter_queue.to_owned())
        .bind(headers_json(&message.envelope))
        .bind(i64::from(message.redeliveries))
        .bind(message.available_at)
        .bind(message.id)
        .execute(self.db.pool())
        .await?;
        self.count_transaction();
        Ok(())
    }

    /// Moves `revived` dead letters back to `queue` as they are now, and deletes the `gone`
    /// ones: one transaction, so a crash keeps either the dead letters or their outcome.
    async fn move_dead_letters(&self, queue: &str, revived: &[Message], gone: &[i64]) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        for message in revived {
            sqlx::query(
                "UPDATE pos_bus_messages SET queue = $1, headers = $2, redeliveries = $3, available_at = $4 \
                 WHERE id = $5",
            )
            .bind(queue.to_owned())
            .bind(headers_json(&message.envelope))
            .bind(i64::from(message.redeliveries))
            .bind(message.available_at)
            .bind(message.id)
            .execute(&mut *tx)
            .await?;
        }
        delete_rows(&mut tx, gone).await?;
        tx.commit().await?;
        self.count_transaction();
        Ok(())
    }
}

/// Nanoseconds keep the envelope's timestamp exact (chrono's range for them ends in 2262).
fn timestamp_nanos(envelope: &Envelope) -> i64 {
    envelope.timestamp.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn headers_json(envelope: &Envelope) -> String {
    serde_json::to_string(&envelope.headers).unwrap_or_else(|_| "{}".to_owned())
}

fn message_from_row(row: &AnyRow) -> Result<Message, sqlx::Error> {
    let headers: String = row.try_get("headers")?;
    let headers = serde_json::from_str(&headers).map_err(|e| sqlx::Error::Decode(e.into()))?;
    let payload: Vec<u8> = row.try_get("payload")?;
    let redeliveries: i64 = row.try_get("redeliveries")?;
    Ok(Message {
        id: row.try_get("id")?,
        envelope: Envelope {
            message_id: row.uuid("message_id")?,
            routing_key: row.try_get("routing_key")?,
            type_name: row.try_get("type_name")?,
            timestamp: DateTime::from_timestamp_nanos(row.try_get("timestamp_nanos")?),
            headers,
            payload: Bytes::from(payload),
        },
        redeliveries: u32::try_from(redeliveries).unwrap_or(u32::MAX),
        available_at: row.try_get("available_at")?,
    })
}
