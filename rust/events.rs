//! Conntrack events (ctnetlink, `conntrack -E`, spec §13): the bits an entry caches while a
//! packet is processed become one message at the end of the packet's path; DESTROY is sent at
//! once. Messages wait in a bounded queue for a reader; when it is full they are counted as
//! lost, as netlink's ENOBUFS is, and memory stays bounded.

use crate::conn::ConnView;
use crate::format;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The message type `ctnetlink_conntrack_event` chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    New,
    Update,
    Destroy,
}

impl EventKind {
    /// The tag `conntrack -E` prints.
    pub fn tag(self) -> &'static str {
        match self {
            EventKind::New => "NEW",
            EventKind::Update => "UPDATE",
            EventKind::Destroy => "DESTROY",
        }
    }
}

/// One event message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// When it was sent, on the table's clock (ns).
    pub tstamp: u64,
    /// The entry as the message describes it.
    pub view: ConnView,
    /// Whether the protocol state is included (a PROTOINFO bit, or any DESTROY).
    pub protoinfo: bool,
}

impl Event {
    /// The `conntrack -E -o extended` line, with the `-o timestamp` prefix when asked.
    pub fn line(&self, timestamp: bool, out: &mut String) {
        if timestamp {
            use std::fmt::Write;
            let _ =
                write!(out, "[{}.{:06}]\t", self.tstamp / 1_000_000_000, self.tstamp % 1_000_000_000 / 1000);
        }
        format::event_line(self.kind.tag(), &self.view, self.protoinfo, out);
    }
}

/// Default capacity of the queue (messages); the Python signature repeats the number.
pub const DEFAULT_CAPACITY: usize = 1 << 16;

/// The listeners' side: whether anyone listens, the queue, what was lost.
#[derive(Debug)]
pub struct EventSink {
    listening: AtomicBool,
    queue: Mutex<VecDeque<Event>>,
    capacity: AtomicU64,
    lost: AtomicU64,
}

impl Default for EventSink {
    fn default() -> EventSink {
        EventSink {
            listening: AtomicBool::new(false),
            queue: Mutex::new(VecDeque::new()),
            capacity: AtomicU64::new(DEFAULT_CAPACITY as u64),
            lost: AtomicU64::new(0),
        }
    }
}

impl EventSink {
    /// Whether a listener exists (what `nf_conntrack_events=2` asks at entry creation).
    #[inline]
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Starts or stops listening; `capacity` bounds the queue.
    pub fn listen(&self, on: bool, capacity: usize) {
        self.capacity.store(capacity.max(1) as u64, Ordering::Relaxed);
        self.listening.store(on, Ordering::Relaxed);
        if !on {
            self.queue.lock().clear();
        }
    }

    /// Queues a message for the listener, or counts it lost when the queue is full.
    pub fn send(&self, ev: Event) {
        if !self.listening() {
            return;
        }
        let mut q = self.queue.lock();
        if q.len() as u64 >= self.capacity.load(Ordering::Relaxed) {
            self.lost.fetch_add(1, Ordering::Relaxed);
        } else {
            q.push_back(ev);
        }
    }

    /// Takes every queued message, oldest first.
    pub fn drain(&self, mut f: impl FnMut(Event)) {
        let taken: Vec<Event> = self.queue.lock().drain(..).collect();
        for ev in taken {
            f(ev);
        }
    }

    /// Messages lost to a full queue (ENOBUFS).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}
