//! [`Outbox`]: a connection's bounded queue of outbound messages, with Redis-style client
//! output buffer limits.
//!
//! # Why (lesson 5 of the design notes)
//!
//! A traffic mirror that sent to every subscriber synchronously stalled whenever one
//! subscriber was slow, and its queues grew until packets were lost. In Ringfort a
//! publisher never waits and no queue is unbounded: each connection owns an `Outbox`,
//! [`Outbox::push`] either queues a message at once or refuses it with an [`Evict`], and
//! the reactor closes an evicted connection with the reason in its log. Other subscribers
//! are untouched: a published payload is one [`BufChain`] cloned into every outbox (the
//! clone shares the pool blocks; no payload bytes are copied), and each outbox advances
//! and drops only its own clone.
//!
//! The same queue holds a normal connection's replies when the client stops reading.
//!
//! # The limits ([`OutboxLimits`]), as in Redis's `client-output-buffer-limit`
//!
//! - **Hard bytes**: a push that would take the queued bytes past `hard_bytes` evicts.
//! - **Soft bytes for a time**: a push while the queue has stayed above `soft_bytes`
//!   continuously for longer than `soft_seconds` evicts. The timer starts at the push that
//!   first takes the queue above the soft limit and resets whenever sends bring it back to
//!   the soft limit or below. `soft_bytes == 0` disables the soft limit, as in Redis.
//! - **Items**: a push that would make more than `max_items` messages queued evicts.
//!
//! Unlike Redis, a hard limit of 0 does not mean "unlimited": Ringfort has no unbounded
//! queue, so [`Outbox::new`] refuses it (and a zero item limit) with a [`LimitsError`].
//! Time is passed in (`now`), so the limits are deterministic to test.
//!
//! # Eviction is final
//!
//! The message that triggers an eviction is dropped, and every later push returns the same
//! [`Evict`] and drops its message too, so an evicted subscriber can never receive a
//! stream with a hole in it: it gets a close with a reason, not a silent gap. Messages
//! already queued stay until the outbox is dropped.
//!
//! # Sending
//!
//! The reactor gathers iovecs across queued messages ([`Outbox::fill_iovecs`]), sends
//! them in one operation, and reports how many bytes the kernel took
//! ([`Outbox::consume`]); a message sent in part stays at the front with its remaining
//! bytes.
//!
//! # Memory
//!
//! Queued bytes live in pool blocks and are counted against the byte limits. The queue's
//! own slots (`size_of::<BufChain>()`, 160 B on x86-64) are counted against `max_items`.
//! The slot ring starts with room for a few messages and doubles when full, never past
//! `max_items` and never shrinking, so once a connection has reached its deepest queue,
//! pushes allocate nothing. Reserving `max_items` slots up front instead would cost every
//! connection up to 10 MiB for the default 65 536 items, which tens of thousands of mostly
//! idle connections cannot afford.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use ringfort_pool::BufChain;

/// Room for this many messages is reserved when an outbox is created.
const INITIAL_SLOTS: usize = 8;

const MIB: usize = 1 << 20;

/// The limits of one [`Outbox`]. See the module docs for their meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Evict when a push would queue more than this many bytes. Must not be 0.
    pub hard_bytes: usize,
    /// Evict when the queue has been above this many bytes for longer than
    /// `soft_seconds`; 0 disables the soft limit. At most `hard_bytes`.
    pub soft_bytes: usize,
    /// How long the queue may stay above `soft_bytes`, in seconds.
    pub soft_seconds: u64,
    /// Evict when a push would queue more than this many messages. Must not be 0.
    pub max_items: usize,
}

impl OutboxLimits {
    /// Redis's pub/sub default, `client-output-buffer-limit pubsub 32mb 8mb 60`: 32 MiB
    /// hard, 8 MiB for 60 s soft; plus at most 65 536 queued messages.
    pub const fn redis_pubsub_default() -> OutboxLimits {
        OutboxLimits {
            hard_bytes: 32 * MIB,
            soft_bytes: 8 * MIB,
            soft_seconds: 60,
            max_items: 1 << 16,
        }
    }

    /// For normal (request/reply) connections. Redis's default here is
    /// `client-output-buffer-limit normal 0 0 0`, no limit at all; Ringfort has no unbounded
    /// queue, so a client that stops reading its replies is evicted at 64 MiB hard or
    /// 65 536 queued messages, with no soft limit.
    pub const fn normal_default() -> OutboxLimits {
        OutboxLimits {
            hard_bytes: 64 * MIB,
            soft_bytes: 0,
            soft_seconds: 0,
            max_items: 1 << 16,
        }
    }

    /// Checks that the limits bound the queue and are consistent.
    pub fn validate(&self) -> Result<(), LimitsError> {
        if self.hard_bytes == 0 {
            return Err(LimitsError::ZeroHardBytes);
        }
        if self.max_items == 0 {
            return Err(LimitsError::ZeroMaxItems);
        }
        if self.soft_bytes > self.hard_bytes {
            return Err(LimitsError::SoftAboveHard {
                soft_bytes: self.soft_bytes,
                hard_bytes: self.hard_bytes,
            });
        }
        Ok(())
    }

    fn soft_duration(&self) -> Duration {
        Duration::from_secs(self.soft_seconds)
    }
}

impl Default for OutboxLimits {
    /// [`OutboxLimits::normal_default`].
    fn default() -> Self {
        OutboxLimits::normal_default()
    }
}

/// [`OutboxLimits`] that [`Outbox::new`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// `hard_bytes` is 0.
    #[error(
        "outbox hard_bytes is 0: in Redis that means unlimited, but Ringfort has no \
         unbounded queue; set a byte bound (the normal default is 64 MiB)"
    )]
    ZeroHardBytes,
    /// `max_items` is 0.
    #[error("outbox max_items is 0: no message could ever be queued; set a bound such as 65536")]
    ZeroMaxItems,
    /// `soft_bytes` exceeds `hard_bytes`, so the soft limit could never act.
    #[error(
        "outbox soft_bytes {soft_bytes} exceeds hard_bytes {hard_bytes}: the soft limit \
         could never act; lower it, or set it to 0 to disable it"
    )]
    SoftAboveHard {
        /// The soft limit given.
        soft_bytes: usize,
        /// The hard limit given.
        hard_bytes: usize,
    },
}

/// Which limit an eviction crossed. Its `Display` names the limit, as Redis's log does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictReason {
    /// [`OutboxLimits::hard_bytes`].
    HardBytes {
        /// The limit, in bytes.
        limit: usize,
    },
    /// [`OutboxLimits::soft_bytes`] for longer than [`OutboxLimits::soft_seconds`].
    SoftBytes {
        /// The limit, in bytes.
        limit: usize,
        /// How long the queue may stay above it, in seconds.
        seconds: u64,
    },
    /// [`OutboxLimits::max_items`].
    MaxItems {
        /// The limit, in messages.
        limit: usize,
    },
}

impl fmt::Display for EvictReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EvictReason::HardBytes { limit } => {
                write!(f, "client output buffer hard limit {limit} reached")
            }
            EvictReason::SoftBytes { limit, seconds } => write!(
                f,
                "client output buffer soft limit {limit} exceeded for more than {seconds} s"
            ),
            EvictReason::MaxItems { limit } => {
                write!(f, "client output queue limit of {limit} messages reached")
            }
        }
    }
}

/// [`Outbox::push`] refused: close the connection, logging this. The message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {queued_bytes} bytes queued")]
pub struct Evict {
    /// The limit crossed.
    pub reason: EvictReason,
    /// Bytes that would have been queued, counting the refused message.
    pub queued_bytes: usize,
    /// Messages that would have been queued, counting the refused message.
    pub queued_items: usize,
}

/// [`Outbox::consume`] was told more bytes were sent than are queued. Nothing was consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("consume({sent}) on an outbox holding {queued} bytes")]
pub struct OverConsume {
    /// Bytes reported sent.
    pub sent: usize,
    /// Bytes queued.
    pub queued: usize,
}

/// A connection's bounded outbound queue. See the module docs.
pub struct Outbox {
    queue: VecDeque<BufChain>,
    /// Sum of the queued chains' lengths.
    queued: usize,
    limits: OutboxLimits,
    /// When the queue last went above the soft limit; `None` while at or below it.
    soft_since: Option<Instant>,
    evicted: Option<Evict>,
}

impl Outbox {
    /// An empty outbox with these limits, or the reason they are refused.
    pub fn new(limits: OutboxLimits) -> Result<Outbox, LimitsError> {
        limits.validate()?;
        Ok(Outbox {
            queue: VecDeque::with_capacity(limits.max_items.min(INITIAL_SLOTS)),
            queued: 0,
            limits,
            soft_since: None,
            evicted: None,
        })
    }

    /// Replaces the limits (a client that subscribes moves to the pub/sub limits). The
    /// new limits apply from the next push.
    pub fn set_limits(&mut self, limits: OutboxLimits) -> Result<(), LimitsError> {
        limits.validate()?;
        self.limits = limits;
        Ok(())
    }

    /// The limits this outbox enforces.
    pub fn limits(&self) -> &OutboxLimits {
        &self.limits
    }

    /// Bytes queued (not yet reported sent).
    #[inline]
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Messages queued, counting one sent in part.
    #[inline]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The eviction, once one has happened; every later push returns it again.
    pub fn evicted(&self) -> Option<&Evict> {
        self.evicted.as_ref()
    }

    /// Since when the queue has been above the soft limit, if it is.
    pub fn soft_limit_since(&self) -> Option<Instant> {
        self.soft_since
    }

    /// Queues `msg` at the back, without waiting, or evicts: returns [`Evict`] and drops
    /// `msg` when queueing it would cross the hard byte limit or the item limit, or when
    /// the queue has been above the soft limit for longer than the soft time (checked in
    /// that order), and from then on for every push. An empty message is dropped and
    /// queues nothing.
    pub fn push(&mut self, msg: BufChain, now: Instant) -> Result<(), Evict> {
        if let Some(evict) = self.evicted {
            return Err(evict);
        }
        if msg.is_empty() {
            return Ok(());
        }
        let total = self.queued.saturating_add(msg.len());
        let items = self.queue.len() + 1;
        let l = &self.limits;
        let soft_over = l.soft_bytes > 0 && total > l.soft_bytes;
        let soft_since = self.soft_since.unwrap_or(now);
        let reason = if total > l.hard_bytes {
            Some(EvictReason::HardBytes {
                limit: l.hard_bytes,
            })
        } else if items > l.max_items {
            Some(EvictReason::MaxItems { limit: l.max_items })
        } else if soft_over && now.saturating_duration_since(soft_since) > l.soft_duration() {
            Some(EvictReason::SoftBytes {
                limit: l.soft_bytes,
                seconds: l.soft_seconds,
            })
        } else {
            None
        };
        if let Some(reason) = reason {
            let evict = Evict {
                reason,
                queued_bytes: total,
                queued_items: items,
            };
            self.evicted = Some(evict);
            return Err(evict);
        }
        if soft_over {
            self.soft_since = Some(soft_since);
        }
        if self.queue.len() == self.queue.capacity() {
            // Double, but never past the item limit (checked above: len < max_items).
            let want = (self.queue.len() * 2)
                .max(INITIAL_SLOTS)
                .min(self.limits.max_items);
            self.queue.reserve_exact(want - self.queue.len());
        }
        self.queued = total;
        self.queue.push_back(msg);
        Ok(())
    }

    /// The front message: what the next send starts with (only its unsent bytes, if it
    /// was sent in part).
    pub fn front(&self) -> Option<&BufChain> {
        self.queue.front()
    }

    /// Removes and returns the front message (its unsent bytes).
    pub fn pop_front(&mut self) -> Option<BufChain> {
        let msg = self.queue.pop_front()?;
        self.queued -= msg.len();
        self.after_drain();
        Some(msg)
    }

    /// The queued messages, front first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &BufChain> + '_ {
        self.queue.iter()
    }

    /// Records that the kernel took the first `sent` queued bytes: drops the messages they
    /// cover and advances into the one they end in. On error nothing changes.
    pub fn consume(&mut self, sent: usize) -> Result<(), OverConsume> {
        if sent > self.queued {
            return Err(OverConsume {
                sent,
                queued: self.queued,
            });
        }
        let mut left = sent;
        while left > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
        self.queued -= sent;
        self.after_drain();
        Ok(())
    }

    /// Fills `out` with iovecs for the queued bytes, front first, across messages, until
    /// `out` is full or the queue is covered; returns how many were written. The iovecs
    /// borrow the queued blocks: keep the outbox unchanged until the send completes, then
    /// call [`consume`](Self::consume) with the bytes sent.
    pub fn fill_iovecs(&self, out: &mut [libc::iovec]) -> usize {
        let mut n = 0;
        for msg in &self.queue {
            if n == out.len() {
                break;
            }
            n += msg.fill_iovecs(&mut out[n..]);
        }
        n
    }

    fn after_drain(&mut self) {
        if self.queued <= self.limits.soft_bytes {
            self.soft_since = None;
        }
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("len", &self.queue.len())
            .field("queued_bytes", &self.queued)
            .field("limits", &self.limits)
            .field("soft_since", &self.soft_since)
            .field("evicted", &self.evicted)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfort_pool::{
        Arena, BackingPref, Growth, NumaPolicy, PoolConfig, Registration, SizeClass,
    };

    fn arena() -> Arena {
        Arena::new(PoolConfig {
            classes: vec![SizeClass {
                size: 4096,
                count: 256,
            }],
            growth: Growth::Fixed,
            backing: BackingPref::SmallPages,
            registration: Registration::Off,
            numa: NumaPolicy::FirstTouch,
        })
        .unwrap()
    }

    fn msg(arena: &Arena, bytes: &[u8]) -> BufChain {
        let mut c = BufChain::new(1 << 20);
        c.append_slice(arena, bytes).unwrap();
        c
    }

    fn limits(hard: usize, soft: usize, secs: u64, items: usize) -> OutboxLimits {
        OutboxLimits {
            hard_bytes: hard,
            soft_bytes: soft,
            soft_seconds: secs,
            max_items: items,
        }
    }

    /// The queued byte stream.
    fn bytes(ob: &Outbox) -> Vec<u8> {
        ob.iter().flat_map(BufChain::to_vec).collect()
    }

    #[test]
    fn defaults_are_redis_and_valid() {
        let p = OutboxLimits::redis_pubsub_default();
        assert_eq!(
            (p.hard_bytes, p.soft_bytes, p.soft_seconds),
            (32 * 1024 * 1024, 8 * 1024 * 1024, 60)
        );
        let n = OutboxLimits::default();
        assert_eq!(n, OutboxLimits::normal_default());
        assert_eq!((n.hard_bytes, n.soft_bytes), (64 << 20, 0));
        assert!(Outbox::new(p).is_ok());
        assert!(Outbox::new(n).is_ok());
    }

    #[test]
    fn unbounded_or_inconsistent_limits_are_refused() {
        assert_eq!(
            Outbox::new(limits(0, 0, 0, 10)).unwrap_err(),
            LimitsError::ZeroHardBytes
        );
        assert_eq!(
            Outbox::new(limits(10, 0, 0, 0)).unwrap_err(),
            LimitsError::ZeroMaxItems
        );
        let e = Outbox::new(limits(10, 11, 1, 1)).unwrap_err();
        assert_eq!(
            e,
            LimitsError::SoftAboveHard {
                soft_bytes: 11,
                hard_bytes: 10
            }
        );
        assert!(e
            .to_string()
            .contains("soft_bytes 11 exceeds hard_bytes 10"));
        assert!(LimitsError::ZeroHardBytes
            .to_string()
            .contains("no unbounded queue"));
    }

    #[test]
    fn evict_messages_name_the_limit() {
        let e = Evict {
            reason: EvictReason::HardBytes { limit: 33_554_432 },
            queued_bytes: 33_600_000,
            queued_items: 7,
        };
        assert_eq!(
            e.to_string(),
            "client output buffer hard limit 33554432 reached: 33600000 bytes queued"
        );
        let s = EvictReason::SoftBytes {
            limit: 8_388_608,
            seconds: 60,
        };
        assert_eq!(
            s.to_string(),
            "client output buffer soft limit 8388608 exceeded for more than 60 s"
        );
        assert_eq!(
            EvictReason::MaxItems { limit: 3 }.to_string(),
            "client output queue limit of 3 messages reached"
        );
    }

    #[test]
    fn hard_limit_evicts_and_stays_evicted() {
        let a = arena();
        let t = Instant::now();
        let mut ob = Outbox::new(limits(10_000, 0, 0, 100)).unwrap();
        ob.push(msg(&a, &[1; 6000]), t).unwrap();
        ob.push(msg(&a, &[2; 4000]), t).unwrap(); // exactly at the limit: allowed
        assert_eq!(ob.queued_bytes(), 10_000);
        let e = ob.push(msg(&a, &[3; 1]), t).unwrap_err();
        assert_eq!(
            e,
            Evict {
                reason: EvictReason::HardBytes { limit: 10_000 },
                queued_bytes: 10_001,
                queued_items: 3,
            }
        );
        assert_eq!(ob.evicted(), Some(&e));
        // The refused message was dropped; the queue is as it was.
        assert_eq!((ob.len(), ob.queued_bytes()), (2, 10_000));
        // Sending drains, but the outbox stays evicted: no gap can open in the stream.
        ob.consume(10_000).unwrap();
        assert!(ob.is_empty());
        assert_eq!(ob.push(msg(&a, b"x"), t), Err(e));
        assert!(ob.is_empty());
    }

    #[test]
    fn a_message_larger_than_the_hard_limit_evicts_an_empty_outbox() {
        let a = arena();
        let mut ob = Outbox::new(limits(100, 0, 0, 10)).unwrap();
        let e = ob.push(msg(&a, &[0; 101]), Instant::now()).unwrap_err();
        assert_eq!(e.queued_bytes, 101);
        assert!(ob.is_empty());
    }

    #[test]
    fn soft_limit_only_after_the_duration() {
        let a = arena();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut ob = Outbox::new(limits(100_000, 1000, 60, 1000)).unwrap();
        ob.push(msg(&a, &[0; 1000]), t0).unwrap(); // at the soft limit, not above
        assert_eq!(ob.soft_limit_since(), None);
        ob.push(msg(&a, &[0; 10]), t0 + s(5)).unwrap(); // above: the timer starts
        assert_eq!(ob.soft_limit_since(), Some(t0 + s(5)));
        ob.push(msg(&a, &[0; 10]), t0 + s(30)).unwrap();
        ob.push(msg(&a, &[0; 10]), t0 + s(65)).unwrap(); // exactly 60 s: not longer
        assert_eq!(ob.soft_limit_since(), Some(t0 + s(5)));
        let e = ob
            .push(msg(&a, &[0; 10]), t0 + s(65) + Duration::from_millis(1))
            .unwrap_err();
        assert_eq!(
            e.reason,
            EvictReason::SoftBytes {
                limit: 1000,
                seconds: 60
            }
        );
        assert_eq!(e.queued_bytes, 1040);
        assert_eq!(ob.queued_bytes(), 1030);
    }

    #[test]
    fn soft_timer_resets_when_drained_to_the_limit() {
        let a = arena();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut ob = Outbox::new(limits(100_000, 1000, 60, 1000)).unwrap();
        ob.push(msg(&a, &[0; 1500]), t0).unwrap();
        assert_eq!(ob.soft_limit_since(), Some(t0));
        ob.consume(400).unwrap(); // 1100: still above, timer kept
        assert_eq!(ob.soft_limit_since(), Some(t0));
        ob.consume(100).unwrap(); // 1000: back at the limit, timer reset
        assert_eq!(ob.soft_limit_since(), None);
        // Above again at 50 s: a fresh timer, so 100 s is only 50 s above.
        ob.push(msg(&a, &[0; 500]), t0 + s(50)).unwrap();
        assert_eq!(ob.soft_limit_since(), Some(t0 + s(50)));
        ob.push(msg(&a, &[0; 1]), t0 + s(100)).unwrap();
        // Dropping below by pop_front resets too.
        assert_eq!(ob.pop_front().unwrap().len(), 1000);
        assert_eq!(ob.soft_limit_since(), None);
        ob.push(msg(&a, &[0; 600]), t0 + s(200)).unwrap();
        assert_eq!(ob.soft_limit_since(), Some(t0 + s(200)));
        assert!(ob.evicted().is_none());
    }

    #[test]
    fn soft_limit_zero_is_disabled() {
        let a = arena();
        let t0 = Instant::now();
        let mut ob = Outbox::new(limits(10_000, 0, 0, 100)).unwrap();
        ob.push(msg(&a, &[0; 9000]), t0).unwrap();
        ob.push(msg(&a, &[0; 900]), t0 + Duration::from_secs(3600))
            .unwrap();
        assert_eq!(ob.soft_limit_since(), None);
    }

    #[test]
    fn max_items_evicts() {
        let a = arena();
        let t = Instant::now();
        let mut ob = Outbox::new(limits(1 << 20, 0, 0, 3)).unwrap();
        for _ in 0..3 {
            ob.push(msg(&a, b"abc"), t).unwrap();
        }
        let e = ob.push(msg(&a, b"abc"), t).unwrap_err();
        assert_eq!(e.reason, EvictReason::MaxItems { limit: 3 });
        assert_eq!((e.queued_items, e.queued_bytes), (4, 12));
        assert_eq!(ob.len(), 3);
    }

    #[test]
    fn empty_messages_queue_nothing() {
        let a = arena();
        let t = Instant::now();
        let mut ob = Outbox::new(limits(10, 0, 0, 1)).unwrap();
        ob.push(BufChain::new(10), t).unwrap();
        assert!(ob.is_empty());
        ob.push(msg(&a, b"x"), t).unwrap();
        ob.push(BufChain::new(10), t).unwrap(); // not an item: no eviction
        assert_eq!(ob.len(), 1);
    }

    #[test]
    fn consume_across_chains_and_into_one() {
        let a = arena();
        let t = Instant::now();
        let mut ob = Outbox::new(limits(1 << 20, 0, 0, 100)).unwrap();
        let big: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect(); // three blocks
        ob.push(msg(&a, b"hello "), t).unwrap();
        ob.push(msg(&a, &big), t).unwrap();
        ob.push(msg(&a, b"world"), t).unwrap();
        let mut model: Vec<u8> = [&b"hello "[..], &big, b"world"].concat();
        assert_eq!(bytes(&ob), model);
        // Into the middle of the second chain's second block.
        for n in [0, 3, 3 + 4200, 5000, 2] {
            ob.consume(n).unwrap();
            model.drain(..n);
            assert_eq!(bytes(&ob), model);
            assert_eq!(ob.queued_bytes(), model.len());
        }
        assert_eq!(ob.len(), 2);
        assert_eq!(ob.front().unwrap().len(), 10_000 - (9208 - 6));
        // Too much is an error and changes nothing.
        let left = model.len();
        assert_eq!(
            ob.consume(left + 1),
            Err(OverConsume {
                sent: left + 1,
                queued: left
            })
        );
        assert_eq!(bytes(&ob), model);
        ob.consume(left).unwrap();
        assert!(ob.is_empty());
        assert_eq!(ob.queued_bytes(), 0);
        assert!(ob.pop_front().is_none());
        assert!(ob.front().is_none());
    }

    #[test]
    fn fill_iovecs_spans_chains_and_stops_when_full() {
        let a = arena();
        let t = Instant::now();
        let mut ob = Outbox::new(limits(1 << 20, 0, 0, 100)).unwrap();
        ob.push(msg(&a, &[1; 5000]), t).unwrap(); // 2 segments
        ob.push(msg(&a, &[2; 10]), t).unwrap(); // 1
        ob.push(msg(&a, &[3; 9000]), t).unwrap(); // 3
        ob.consume(100).unwrap();
        let chunks: Vec<&[u8]> = ob.iter().flat_map(|c| c.chunks()).collect();
        assert_eq!(chunks.len(), 6);
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iov = [empty; 8];
        assert_eq!(ob.fill_iovecs(&mut iov), 6);
        for (v, c) in iov.iter().zip(&chunks) {
            assert_eq!(v.iov_base as *const u8, c.as_ptr());
            assert_eq!(v.iov_len, c.len());
        }
        assert_eq!(iov[..6].iter().map(|v| v.iov_len).sum::<usize>(), 13_910);
        let mut few = [empty; 4];
        assert_eq!(ob.fill_iovecs(&mut few), 4);
        assert_eq!(few[3].iov_base as *const u8, chunks[3].as_ptr());
        assert_eq!(ob.fill_iovecs(&mut []), 0);
    }
}
