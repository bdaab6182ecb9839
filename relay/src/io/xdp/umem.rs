//! The UMEM (the packet memory an AF_XDP socket shares with the kernel) and the four
//! single-producer, single-consumer rings that pass frame addresses over it.
//!
//! Hand-written over libc rather than the `xdp` crate (0.8): this is the relay's fast
//! path, and the crate's all-or-nothing ring reservations and missing need-wakeup
//! accessor are exactly what this path needs to control (TOOLCHAIN.md). The ring
//! protocol is small: the producer writes entries, then publishes its index with a
//! release store; the consumer reads the index with an acquire load, then the entries.

use std::io;
use std::mem;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};
use std::slice;
use std::sync::atomic::{AtomicU32, Ordering};

/// An anonymous or socket mapping, unmapped on drop.
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a mapping is plain memory; who may touch which bytes is decided by its users
// (the UMEM's frames are split between the socket's halves, each ring has one user).
unsafe impl Send for Mmap {}
unsafe impl Sync for Mmap {}

impl Mmap {
    fn new(len: usize, fd: RawFd, offset: libc::off_t) -> io::Result<Mmap> {
        let flags = if fd < 0 {
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS
        } else {
            libc::MAP_SHARED
        };
        // SAFETY: a fresh mapping at an address the kernel picks; nothing aliases it.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags | libc::MAP_POPULATE,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mmap { ptr, len })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, which nothing uses any more.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The packet memory: `frames` frames of `frame_size` bytes (a power of two, so that
/// any address inside a frame gives the frame's start by masking).
pub struct Umem {
    area: Mmap,
    frame_size: u32,
}

impl Umem {
    pub fn new(frames: u32, frame_size: u32) -> io::Result<Umem> {
        let len = frames as usize * frame_size as usize;
        Ok(Umem {
            area: Mmap::new(len, -1, 0)?,
            frame_size,
        })
    }

    /// Registers the memory with AF_XDP socket `fd` (XDP_UMEM_REG), with `tx_metadata`
    /// bytes of TX metadata before every frame sent (0: none), and `flags`.
    pub fn register(&self, fd: RawFd, tx_metadata: u32, flags: u32) -> io::Result<()> {
        let reg = libc::xdp_umem_reg {
            addr: self.area.ptr.as_ptr() as u64,
            len: self.area.len as u64,
            chunk_size: self.frame_size,
            headroom: 0,
            flags: if tx_metadata > 0 {
                flags | libc::XDP_UMEM_TX_METADATA_LEN
            } else {
                flags
            },
            tx_metadata_len: tx_metadata,
        };
        set_option(fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)
    }

    /// Start address of frame `index`.
    pub fn frame_addr(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.frame_size)
    }

    /// Start address of the frame that holds `addr`.
    pub fn frame_of(&self, addr: u64) -> u64 {
        addr & !(u64::from(self.frame_size) - 1)
    }

    /// The `len` bytes at `addr`, if they lie inside one frame.
    ///
    /// # Safety
    /// The caller owns that frame (took it from the RX ring) and the kernel writes no
    /// more into it until the caller gives it back.
    pub unsafe fn bytes(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let end = addr.checked_add(u64::from(len))?;
        if end > self.frame_of(addr) + u64::from(self.frame_size) || end > self.area.len as u64 {
            return None;
        }
        // SAFETY: in bounds (checked above); the caller guarantees nothing writes it.
        Some(unsafe {
            slice::from_raw_parts(self.area.ptr.as_ptr().add(addr as usize), len as usize)
        })
    }

    /// Asks the CPU to bring the first `len` bytes of `frame` into its cache, for
    /// writing. A frame the device gave back was last read by the kernel's copy, often
    /// on another core or long ago, and the first writes into it (headers, payload, the
    /// seal) waited for it; fetched one datagram ahead, the wait overlaps the seal before.
    pub fn prefetch_for_write(&self, frame: u64, len: usize) {
        let len = len.min(self.frame_size as usize);
        if frame as usize + len > self.area.len {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        for line in (0..len).step_by(64) {
            // SAFETY: a prefetch has no effect but on the cache and never faults; the
            // address is inside the mapping anyway (checked above).
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
                let at = self.area.ptr.as_ptr().add(frame as usize + line);
                _mm_prefetch::<_MM_HINT_ET0>(at.cast_const().cast());
            }
        }
    }

    /// The whole frame starting at `frame`, to write into.
    ///
    /// # Safety
    /// The caller owns that frame (it is in no ring) and holds no other slice of it.
    #[allow(clippy::mut_from_ref)] // frames are owned by index, not by borrow
    pub unsafe fn frame_mut(&self, frame: u64) -> &mut [u8] {
        assert!(frame + u64::from(self.frame_size) <= self.area.len as u64);
        // SAFETY: in bounds (asserted above); the caller guarantees exclusive access.
        unsafe {
            slice::from_raw_parts_mut(
                self.area.ptr.as_ptr().add(frame as usize),
                self.frame_size as usize,
            )
        }
    }
}

/// Where the kernel placed one ring's fields in its mapping (XDP_MMAP_OFFSETS).
#[derive(Clone, Copy)]
pub struct RingOffsets {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

/// The offsets of all four rings of socket `fd`.
pub fn ring_offsets(fd: RawFd) -> io::Result<[RingOffsets; 4]> {
    // SAFETY: all-zero is a valid xdp_mmap_offsets; the kernel fills it.
    let mut off: libc::xdp_mmap_offsets = unsafe { mem::zeroed() };
    let mut len = mem::size_of_val(&off) as libc::socklen_t;
    // SAFETY: passes a live struct and its true size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            ptr::from_mut(&mut off).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != mem::size_of_val(&off) {
        return Err(io::Error::other(
            "kernel too old: no ring flags (need Linux 5.4+)",
        ));
    }
    let o = |r: libc::xdp_ring_offset| RingOffsets {
        producer: r.producer,
        consumer: r.consumer,
        desc: r.desc,
        flags: r.flags,
    };
    Ok([o(off.rx), o(off.tx), o(off.fr), o(off.cr)])
}

/// One ring's mapping: the two indices, the flags word and `size` entries of `T`.
struct RingMap<T> {
    map: Mmap,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    entries: *mut T,
    mask: u32,
}

// SAFETY: each ring has one user-space side, owned by one socket half; the pointers
// point into the ring's own mapping, which moves with it.
unsafe impl<T> Send for RingMap<T> {}

impl<T> RingMap<T> {
    /// Maps the ring of `size` entries that the socket offers at page offset `pgoff`.
    fn new(fd: RawFd, pgoff: u64, off: RingOffsets, size: u32) -> io::Result<RingMap<T>> {
        let len = off.desc as usize + size as usize * mem::size_of::<T>();
        let map = Mmap::new(len, fd, pgoff as libc::off_t)?;
        let at = |o: u64| map.ptr.as_ptr().wrapping_add(o as usize);
        Ok(RingMap {
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            entries: at(off.desc).cast(),
            mask: size - 1,
            map,
        })
    }

    fn index(&self, which: *const AtomicU32) -> &AtomicU32 {
        // SAFETY: the index words are 4-aligned u32s inside the live mapping, and the
        // kernel accesses them atomically too.
        unsafe { &*which }
    }

    fn size(&self) -> u32 {
        self.mask + 1
    }

    fn needs_wakeup(&self) -> bool {
        self.index(self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    fn slot(&self, index: u32) -> *mut T {
        debug_assert!(self.map.len >= mem::size_of::<T>() * self.size() as usize);
        // SAFETY: masked into the ring's entries, which lie inside the mapping.
        unsafe { self.entries.add((index & self.mask) as usize) }
    }
}

/// A ring user space fills and the kernel drains: the fill ring and the TX ring.
pub struct Producer<T> {
    ring: RingMap<T>,
    /// Our index: entries before it are published.
    head: u32,
    /// The kernel's index as last read.
    tail: u32,
}

impl<T: Copy> Producer<T> {
    pub fn new(fd: RawFd, pgoff: u64, off: RingOffsets, size: u32) -> io::Result<Self> {
        let ring = RingMap::new(fd, pgoff, off, size)?;
        let head = ring.index(ring.producer).load(Ordering::Relaxed);
        let tail = ring.index(ring.consumer).load(Ordering::Acquire);
        Ok(Producer { ring, head, tail })
    }

    /// Free entries, reading the kernel's index only when fewer than `want` are known free.
    pub fn free(&mut self, want: u32) -> u32 {
        let known = self.ring.size() - self.head.wrapping_sub(self.tail);
        if known >= want {
            return known;
        }
        self.tail = self.ring.index(self.ring.consumer).load(Ordering::Acquire);
        self.ring.size() - self.head.wrapping_sub(self.tail)
    }

    /// Writes entry `offset` past the published ones; the caller checked `free`.
    pub fn write(&mut self, offset: u32, value: T) {
        // SAFETY: the slot is free (the kernel consumed it: acquire load in `free`),
        // inside the mapping and aligned (the kernel aligns the entries).
        unsafe { ptr::write(self.ring.slot(self.head.wrapping_add(offset)), value) };
    }

    /// Publishes the next `n` written entries.
    pub fn submit(&mut self, n: u32) {
        self.head = self.head.wrapping_add(n);
        self.ring
            .index(self.ring.producer)
            .store(self.head, Ordering::Release);
    }

    /// Published entries the kernel has not consumed yet.
    pub fn outstanding(&mut self) -> u32 {
        self.head.wrapping_sub(self.consumed())
    }

    /// The kernel's consumer index (wrapping): entries it consumed since the start.
    pub fn consumed(&mut self) -> u32 {
        self.tail = self.ring.index(self.ring.consumer).load(Ordering::Acquire);
        self.tail
    }

    /// The kernel asks to be woken (need_wakeup) before it looks at this ring again.
    pub fn needs_wakeup(&self) -> bool {
        self.ring.needs_wakeup()
    }
}

/// A ring the kernel fills and user space drains: the RX ring and the completion ring.
pub struct Consumer<T> {
    ring: RingMap<T>,
    /// The kernel's index as last read.
    head: u32,
    /// Our index: entries before it are released.
    tail: u32,
}

impl<T: Copy> Consumer<T> {
    pub fn new(fd: RawFd, pgoff: u64, off: RingOffsets, size: u32) -> io::Result<Self> {
        let ring = RingMap::new(fd, pgoff, off, size)?;
        let tail = ring.index(ring.consumer).load(Ordering::Relaxed);
        let head = ring.index(ring.producer).load(Ordering::Acquire);
        Ok(Consumer { ring, head, tail })
    }

    /// Entries ready to read, at most `max`; reads the kernel's index only when the
    /// ones known are used up.
    pub fn available(&mut self, max: u32) -> u32 {
        if self.head == self.tail {
            self.head = self.ring.index(self.ring.producer).load(Ordering::Acquire);
        }
        self.head.wrapping_sub(self.tail).min(max)
    }

    /// Entry `offset` past the released ones; the caller checked `available`.
    pub fn read(&self, offset: u32) -> T {
        // SAFETY: the kernel published the entry (acquire load in `available`) and
        // will not rewrite it before `release`.
        unsafe { ptr::read(self.ring.slot(self.tail.wrapping_add(offset))) }
    }

    /// Gives the next `n` entries back to the kernel.
    pub fn release(&mut self, n: u32) {
        self.tail = self.tail.wrapping_add(n);
        self.ring
            .index(self.ring.consumer)
            .store(self.tail, Ordering::Release);
    }
}

/// Sets a socket option to the bytes of `value`.
pub fn set_option<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: passes a live value and its true size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            ptr::from_ref(value).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
