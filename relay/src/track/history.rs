//! What a track keeps of its past, and where: the ring of packets that fan-out, NACK
//! and instant start read, bounded by time and bytes rather than by a packet count,
//! and the packed storage of their payloads.
//!
//! A packet count is the wrong bound: 1,024 packets are 5 s of a 2 Mbit/s stream but
//! 20 s of audio, and each held a payload allocation of its own. Here a track keeps
//! `historyDuration` of packets (plus, with `keyframeCache`, everything since its
//! newest keyframe), never more than `historyMaxBytes` of payload, and the ring of
//! slots grows to what that takes. Payloads are packed back to back in chunks sized to
//! the track's rate, so a 200-byte audio packet costs 200 bytes and a chunk is written
//! again (or kept for another track on the thread, or freed) once the last packet in
//! it has left the history (and the last worker reading it has dropped it).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use crossbeam_epoch as epoch;

use super::Packet;

/// How much history a track keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `historyDuration`: packets that arrived this long before the newest are let go.
    pub duration: Duration,
    /// `historyMaxBytes`: payload bytes kept at most, whatever the duration says.
    pub max_bytes: usize,
    /// `keyframeCache`: video keeps everything since its newest keyframe too, so that a
    /// viewer can start at once (within `max_bytes`).
    pub keyframe_cache: bool,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            duration: Duration::from_secs(1),
            max_bytes: 8 << 20,
            keyframe_cache: true,
        }
    }
}

/// Packets a ring holds at most, whatever the limits say: a flood of tiny packets must
/// not grow the slots without bound.
pub const MAX_PACKETS: u64 = 1 << 15;
const MIN_SLOTS: usize = 64;

/// The slots of one capacity. Replaced by a bigger one (never in place) when the history
/// outgrows it, so readers holding the old one still read valid packets.
///
/// A slot holds its packet's `Arc` as a raw pointer, read under an epoch guard: the
/// writer defers giving up its reference to a packet it replaced until no reader that
/// could have seen the pointer is still pinned (crossbeam-epoch). Slots of `ArcSwap`
/// made every store scan the debt lists of every thread that ever read one, twice per
/// packet (stored, then let go): 8% of the relay's CPU at 64 streams.
pub(super) struct Ring {
    slots: Box<[AtomicPtr<Packet>]>,
    /// Extended sequence number -> index + 1 (0: none), for NACK lookups.
    by_seq: Box<[AtomicU64]>,
    mask: u64,
}

impl Ring {
    pub(super) fn with_capacity(capacity: usize) -> Ring {
        let capacity = capacity.max(MIN_SLOTS).next_power_of_two();
        Ring {
            slots: (0..capacity)
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect(),
            by_seq: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            mask: capacity as u64 - 1,
        }
    }

    pub(super) fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// The packet at `index`, if this ring holds it.
    pub(super) fn get(&self, index: u64) -> Option<Arc<Packet>> {
        let _pinned = epoch::pin();
        let p = self.slots[(index & self.mask) as usize].load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` came from `Arc::into_raw` in `put`, and the slot's reference to it
        // is dropped only through `retire`, deferred past every guard pinned when it
        // was taken out of the slot: ours was pinned before the load, so the count
        // is still at least one here.
        let p = unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        };
        (p.index == index).then_some(p)
    }

    /// What `read` makes of the packet at `index`, if this ring holds it: borrowed under
    /// the epoch, without the two atomic counts of [`Ring::get`] on a packet that is
    /// likely cold (the writer looks at its oldest).
    pub(super) fn peek<R>(&self, index: u64, read: impl FnOnce(&Packet) -> R) -> Option<R> {
        let _pinned = epoch::pin();
        let p = self.slots[(index & self.mask) as usize].load(Ordering::Acquire);
        // SAFETY: as in `get`: pinned before the load, so `p` is not dropped before the
        // guard is, and the borrow does not outlive it.
        let p = unsafe { p.as_ref() }?;
        (p.index == index).then(|| read(p))
    }

    /// The index of the packet with extended sequence number `seq`, if it was stored here.
    pub(super) fn index_of_seq(&self, seq: u64) -> Option<u64> {
        self.by_seq[(seq & self.mask) as usize]
            .load(Ordering::Acquire)
            .checked_sub(1)
    }

    pub(super) fn put(&self, p: Arc<Packet>) {
        let (index, seq) = (p.index, p.seq);
        let new = Arc::into_raw(p).cast_mut();
        retire(self.slots[(index & self.mask) as usize].swap(new, Ordering::AcqRel));
        self.by_seq[(seq & self.mask) as usize].store(index + 1, Ordering::Release);
    }

    /// Lets go of the packet at `index`: its payload may be freed once readers drop it.
    pub(super) fn clear(&self, index: u64) {
        retire(self.slots[(index & self.mask) as usize].swap(ptr::null_mut(), Ordering::AcqRel));
    }

    /// A ring twice as big holding the same packets (`from..to`).
    pub(super) fn grown(&self, from: u64, to: u64) -> Ring {
        let bigger = Ring::with_capacity(self.slots.len() * 2);
        for p in (from..to).filter_map(|i| self.get(i)) {
            bigger.put(p);
        }
        bigger
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        for slot in self.slots.iter_mut() {
            let p = *slot.get_mut();
            if !p.is_null() {
                // SAFETY: the ring is gone, so no reader can load `p` any more; it came
                // from `Arc::into_raw` and the slot still owns that reference.
                drop(unsafe { Arc::from_raw(p) });
            }
        }
    }
}

/// Drops a slot's reference to `p` (if any) once no reader pinned now can still be
/// cloning it.
fn retire(p: *mut Packet) {
    if p.is_null() {
        return;
    }
    let guard = epoch::pin();
    // SAFETY: `p` is out of its slot, so no reader pinned from now on can load it; the
    // drop runs after every guard pinned before has gone, on whichever thread collects
    // it, which an `Arc<Packet>` allows. It owns the slot's reference.
    unsafe { guard.defer_unchecked(move || drop(Arc::from_raw(p))) };
}

/// The smallest and largest payload chunk: small enough that a quiet audio track wastes
/// little, large enough that a busy video track allocates rarely.
const MIN_CHUNK: usize = 4 << 10;
const MAX_CHUNK: usize = 64 << 10;
/// A chunk holds about this fraction of a track's history (1/16), so that the chunk
/// being filled and the one partly let go add little to it.
const CHUNKS_PER_HISTORY: usize = 16;

/// Filled chunks an arena keeps for reuse, at most: about what a history and a GOP of
/// keyframe cache hold at once, with room to spare.
const MAX_RETIRED: usize = 4 * CHUNKS_PER_HISTORY;

/// Free chunks kept on a thread for the next track written on it that needs one, at
/// most (1 MiB at most, in chunks up to `MAX_CHUNK`).
const MAX_SPARE: usize = 16;

thread_local! {
    /// Free chunks that the tracks written on this thread found beyond the one each
    /// takes back. A track lets go of many at once (at a keyframe the keyframe cache
    /// drops a GOP's worth) but takes one at a time: freed, they went back to the OS
    /// (`dirty_decay_ms:0`) while the other tracks faulted fresh pages in for theirs,
    /// ~1,000 page faults a second at W1 and 5% of the relay's CPU. Shared by the
    /// thread's tracks, a few cover them all; kept per track, 64 tracks' worth
    /// (docs/benchmarks.md, "W1: cameras' keyframes spread over the GOP").
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Keeps a free chunk for this thread's tracks, or frees it when the spares are full or
/// it is bigger than a chunk (a payload's own).
fn spare(chunk: BytesMut) {
    if chunk.capacity() <= MAX_CHUNK {
        SPARE.with_borrow_mut(|spare| {
            // The oldest goes: the tracks' sizes follow their rates, the newest the most.
            if spare.len() == MAX_SPARE {
                spare.remove(0);
            }
            spare.push(chunk);
        });
    }
}

/// A spare chunk of `sizes`, most recently let go first (its pages the likeliest to be
/// in the cache).
fn take_spare(sizes: std::ops::RangeInclusive<usize>) -> Option<BytesMut> {
    SPARE.with_borrow_mut(|spare| {
        let at = spare.iter().rposition(|c| sizes.contains(&c.capacity()))?;
        Some(spare.remove(at))
    })
}

/// Takes a retired chunk back whole (its whole allocation, empty) if nothing points into
/// it any more. Asking `try_reclaim` for more than the chunk's tail has left makes it
/// check that: a smaller ask is granted from the tail at once, read or not, and a chunk
/// retires with a few bytes left more often than not.
fn take_back(chunk: &mut BytesMut) -> bool {
    chunk.try_reclaim(chunk.capacity() + 1)
}

/// Payloads packed back to back in shared chunks (written only by the track's writer).
///
/// A filled chunk is kept, and written again once the history and every reader have
/// let go of all its payloads (`try_reclaim`), instead of being freed and a new one
/// allocated: 64 cameras at 2 Mbit/s went through ~40 MB of chunks a second, and the
/// allocator returning their pages to the OS and faulting them in again cost the
/// ingest more than receiving the packets.
#[derive(Default)]
pub(super) struct Arena {
    /// The chunk being filled (none before the first payload).
    chunk: Option<BytesMut>,
    /// Filled chunks (their empty tails), oldest first.
    retired: VecDeque<BytesMut>,
}

impl Arena {
    /// A copy of `payload` in the current chunk, or in the next one (see
    /// [`Arena::next_chunk`]).
    pub(super) fn store(&mut self, payload: &[u8], history_bytes: usize) -> Bytes {
        let room = |c: &BytesMut| c.capacity() - c.len() >= payload.len();
        if !self.chunk.as_ref().is_some_and(room) {
            self.next_chunk(payload.len(), history_bytes);
        }
        let chunk = self
            .chunk
            .as_mut()
            .expect("next_chunk leaves a chunk with room");
        chunk.extend_from_slice(payload);
        chunk.split().freeze()
    }

    /// Retires the current chunk and takes one of at least `at_least` bytes, sized for a
    /// history of `history_bytes`: a retired chunk nothing reads any more, or a new one.
    fn next_chunk(&mut self, at_least: usize, history_bytes: usize) {
        let size = (history_bytes / CHUNKS_PER_HISTORY)
            .next_power_of_two()
            .clamp(MIN_CHUNK, MAX_CHUNK)
            .max(at_least);
        self.retired.extend(self.chunk.take());
        // The packets let go meanwhile were handed to the epoch's garbage 64 at a time
        // (`retire`): passed on now, those no reader can see any more are dropped, and
        // their chunks come free in the order they filled.
        epoch::pin().flush();
        // A chunk nothing reads any more is taken back whole and written again if it is
        // at least half the size wanted: the size follows the history, which the
        // keyframe cache moves back and forth across a power of two. Other free ones go
        // to the thread's few spares: kept by the track, the many a keyframe lets go
        // would hold its memory at its largest for a GOP to come.
        let usable = (size / 2).max(at_least);
        let mut reused = None;
        self.retired.retain_mut(|c| {
            if !take_back(c) {
                return true; // still read
            }
            let free = std::mem::take(c);
            match reused.is_none() && free.capacity() >= usable {
                true => reused = Some(free),
                false => spare(free),
            }
            false
        });
        if self.retired.len() > MAX_RETIRED {
            // Freed when its last payload is.
            self.retired.pop_front();
        }
        let reused = reused.or_else(|| take_spare(usable..=2 * size));
        self.chunk = Some(reused.unwrap_or_else(|| BytesMut::with_capacity(size)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_share_chunks_sized_to_the_history() {
        let mut arena = Arena::default();
        let a = arena.store(&[1; 200], 0);
        let b = arena.store(&[2; 200], 0);
        assert_eq!((&a[..], &b[..]), (&[1u8; 200][..], &[2u8; 200][..]));
        // Back to back in one allocation.
        assert_eq!(a.as_ptr() as usize + 200, b.as_ptr() as usize);
        // A busy track gets bigger chunks; a payload bigger than a chunk gets its own.
        let mut arena = Arena::default();
        arena.store(&[0; 10], 500_000);
        assert_eq!(arena.chunk.as_ref().unwrap().capacity() + 10, 32 << 10);
        let big = arena.store(&vec![7; MAX_CHUNK + 1], 0);
        assert_eq!(big.len(), MAX_CHUNK + 1);
    }

    /// An empty payload (a peer may send one) is stored as nothing, first or later.
    #[test]
    fn an_empty_payload_is_stored_as_nothing() {
        let mut arena = Arena::default();
        assert!(arena.store(&[], 0).is_empty());
        assert_eq!(&arena.store(&[9; 3], 0)[..], &[9; 3]);
        assert!(arena.store(&[], 0).is_empty());
    }

    /// A chunk whose payloads are all gone is written again, not a new one allocated;
    /// one whose payload someone still holds is not touched.
    #[test]
    fn a_chunk_nobody_reads_is_reused() {
        let mut arena = Arena::default();
        let first = arena.store(&[1; 1000], 0);
        let kept = arena.store(&[2; 1000], 0);
        let first_chunk = first.as_ptr();
        drop(first);
        // Fills the 4 KiB chunk, then needs the next: the first is still read (`kept`).
        let filler: Vec<Bytes> = (0..2).map(|_| arena.store(&[3; 1000], 0)).collect();
        let second = arena.store(&[4; 1000], 0);
        assert_ne!(
            second.as_ptr(),
            first_chunk,
            "a chunk still read was reused"
        );
        assert_eq!(&kept[..], &[2; 1000][..]);
        // Everything in the first chunk let go: the next chunk is the first again.
        drop((kept, filler));
        let more: Vec<Bytes> = (0..3).map(|_| arena.store(&[5; 1000], 0)).collect();
        let third = arena.store(&[6; 1000], 0);
        assert_eq!(third.as_ptr(), first_chunk, "the free chunk was not reused");
        assert_eq!(&third[..], &[6; 1000][..]);
        assert!(more.iter().all(|m| m[..] == [5; 1000][..]));
        // A busier history wants bigger chunks: free small ones are let go (to the
        // thread's spares), not kept by the track.
        let rest: Vec<Bytes> = (0..3).map(|_| arena.store(&[8; 1000], 0)).collect();
        drop((second, more, third, rest));
        arena.store(&[7; 100], 500_000);
        assert_eq!(arena.chunk.as_ref().unwrap().capacity() + 100, 32 << 10);
        assert!(arena.retired.is_empty(), "free chunks kept");
    }

    /// Free chunks a track finds beyond the one it takes go to its thread's spares, and
    /// the next track there that needs a chunk writes one of them again instead of a new
    /// one (whose pages the OS would fault in again). The spares are bounded, and a
    /// payload's own chunk, bigger than a chunk, is not kept.
    #[test]
    fn chunks_one_track_lets_go_are_taken_by_the_next() {
        let mut one = Arena::default();
        // Three 4 KiB chunks of four payloads each, all let go.
        let stored: Vec<Bytes> = (0..12).map(|_| one.store(&[1; 1000], 0)).collect();
        let chunks: Vec<*const u8> = stored.iter().step_by(4).map(|b| b.as_ptr()).collect();
        drop(stored);
        // The next payload takes the first chunk back; the other two are spares.
        assert_eq!(one.store(&[2; 1000], 0).as_ptr(), chunks[0]);
        assert_eq!(SPARE.with_borrow(Vec::len), 2);
        let mut two = Arena::default();
        assert_eq!(
            two.store(&[3; 1000], 0).as_ptr(),
            chunks[2],
            "the newest spare"
        );
        assert_eq!(SPARE.with_borrow(Vec::len), 1);

        // A track lets go of many: the thread keeps MAX_SPARE of them.
        let mut many = Arena::default();
        let stored: Vec<Bytes> = (0..4 * (MAX_SPARE + 4))
            .map(|_| many.store(&[4; 1000], 0))
            .collect();
        drop(stored);
        many.store(&[5; 1000], 0);
        many.store(&[6; 4000], 0);
        assert_eq!(SPARE.with_borrow(Vec::len), MAX_SPARE);
        // A payload bigger than any chunk has its own: let go with a chunk the track
        // takes back, it is freed, not kept.
        let mut three = Arena::default();
        let small = three.store(&[7; 1000], 0);
        let big = three.store(&vec![7; MAX_CHUNK + 1], 0);
        let (small_chunk, big_chunk) = (small.as_ptr(), big.as_ptr());
        drop((small, big));
        assert_eq!(three.store(&[8; 1000], 0).as_ptr(), small_chunk);
        assert!(SPARE.with_borrow(|spare| spare.iter().all(|c| c.as_ptr() != big_chunk)));
    }

    fn packet(index: u64, payload: Bytes) -> Arc<Packet> {
        Arc::new(Packet {
            index,
            seq: 1000 + index,
            timestamp: 0,
            marker: false,
            payload,
            arrival: std::time::Instant::now(),
        })
    }

    /// A packet let go stays whole for a reader that took it, and is freed once the
    /// epochs move on: the slot's reference is neither leaked nor dropped twice.
    #[test]
    fn a_packet_let_go_is_freed_after_its_readers() {
        let ring = Ring::with_capacity(64);
        let p = packet(5, Bytes::from_static(b"five"));
        let watch = Arc::downgrade(&p);
        ring.put(p);
        let read = ring.get(5).expect("stored");
        ring.clear(5);
        assert!(ring.get(5).is_none());
        assert_eq!(&read.payload[..], b"five");
        drop(read);
        // Deferred drops run once every thread has moved past two epochs.
        let freed = (0..1000).any(|_| {
            epoch::pin().flush();
            watch.upgrade().is_none()
        });
        assert!(freed, "the packet let go was never freed");
        // A packet still in a slot is freed with its ring.
        let p = packet(6, Bytes::new());
        let watch = Arc::downgrade(&p);
        ring.put(p);
        drop(ring);
        assert!(watch.upgrade().is_none(), "the ring leaked its packet");
    }

    /// A peek reads the packet at its index in place, without a count taken, and
    /// nothing for an index whose slot holds another packet or none.
    #[test]
    fn a_peek_reads_only_the_packet_at_its_index() {
        let ring = Ring::with_capacity(64);
        let p = packet(3, Bytes::from_static(b"three"));
        ring.put(p.clone());
        assert_eq!(ring.peek(3, |p| (p.seq, p.payload.len())), Some((1003, 5)));
        assert_eq!(
            Arc::strong_count(&p),
            2,
            "the ring's and ours: no count left"
        );
        assert_eq!(ring.peek(3 + ring.capacity(), |p| p.seq), None);
        assert_eq!(ring.peek(4, |p| p.seq), None);
        ring.clear(3);
        assert_eq!(ring.peek(3, |p| p.seq), None);
    }

    /// Readers racing the writer over the same slots (it stores a packet and lets go
    /// of the one a ring's length before, as a track does) only ever get whole packets
    /// of the index they asked for.
    #[test]
    fn readers_racing_the_writer_get_whole_packets() {
        const PACKETS: u64 = 100_000;
        let ring = Arc::new(Ring::with_capacity(64));
        let head = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (ring, head) = (ring.clone(), head.clone());
                std::thread::spawn(move || {
                    let mut seen = 0u64;
                    loop {
                        let newest = head.load(Ordering::Acquire);
                        for i in newest.saturating_sub(70)..newest + 2 {
                            if let Some(p) = ring.get(i) {
                                assert_eq!(p.index, i);
                                assert_eq!(p.payload[..], i.to_le_bytes()[..]);
                                seen += 1;
                            }
                        }
                        if newest >= PACKETS {
                            return seen;
                        }
                    }
                })
            })
            .collect();
        for i in 0..PACKETS {
            ring.put(packet(i, Bytes::copy_from_slice(&i.to_le_bytes())));
            head.store(i + 1, Ordering::Release);
            if let Some(old) = i.checked_sub(60) {
                ring.clear(old);
            }
        }
        for reader in readers {
            assert!(reader.join().expect("a reader panicked") > 0);
        }
    }

    /// Chunks retire with room left in their tail more often than not: such a chunk is
    /// not taken back while a payload in it is read (a small ask of `try_reclaim` would
    /// be granted from the tail at once), and is written again once none is.
    #[test]
    fn a_chunk_retired_with_room_left_is_reused_only_once_free() {
        let mut arena = Arena::default();
        let read = arena.store(&[1; 3000], 0);
        let first_chunk = read.as_ptr();
        // 1,096 bytes are left in the first 4 KiB chunk: these take the next two.
        let second = arena.store(&[2; 2000], 0);
        let third = arena.store(&[3; 3000], 0);
        for later in [&second, &third] {
            assert!(!(first_chunk..first_chunk.wrapping_add(4096)).contains(&later.as_ptr()));
        }
        assert_eq!(
            arena.retired.len(),
            2,
            "chunks still read are kept, not dropped"
        );
        drop(read);
        let fourth = arena.store(&[4; 3000], 0);
        assert_eq!(
            fourth.as_ptr(),
            first_chunk,
            "the free chunk was not reused"
        );
        assert_eq!((&second[..], &third[..]), (&[2; 2000][..], &[3; 3000][..]));
    }

    #[test]
    fn a_grown_ring_holds_the_same_packets() {
        let ring = Ring::with_capacity(64);
        for i in 10..70u64 {
            ring.put(packet(i, Bytes::new()));
        }
        let bigger = ring.grown(10, 70);
        assert_eq!(bigger.capacity(), 128);
        for i in 10..70 {
            assert_eq!(bigger.get(i).unwrap().index, i);
            assert_eq!(bigger.index_of_seq(1000 + i), Some(i));
        }
        assert!(bigger.get(70).is_none());
    }
}
