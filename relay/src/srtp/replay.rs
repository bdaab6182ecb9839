//! The receiver's view of one sender SSRC: its highest packet index, from which the
//! index of the next packet is estimated (RFC 3711 3.3.1 and Appendix A), and the replay
//! window below it (RFC 3711 3.3.2).

use super::SrtpError;

/// Packets below the highest index that may still arrive once. RFC 3711 asks for at least
/// 64; browsers' libsrtp uses 1024, wide enough for packets NACKed and resent late.
pub(crate) const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

#[derive(Debug, Clone)]
pub(crate) struct ReplayWindow {
    highest: u64,
    /// Bit `index % WINDOW` is set when `index`, within the window, was received.
    seen: [u64; WORDS],
}

impl ReplayWindow {
    /// The window after a first authenticated packet.
    pub(crate) fn new(first: u64) -> ReplayWindow {
        let mut window = ReplayWindow {
            highest: first,
            seen: [0; WORDS],
        };
        window.mark(first);
        window
    }

    pub(crate) fn highest(&self) -> u64 {
        self.highest
    }

    /// Refuses an index received before or fallen out of the window. Changes nothing:
    /// the caller authenticates the packet and then calls [`ReplayWindow::accept`].
    pub(crate) fn check(&self, index: u64) -> Result<(), SrtpError> {
        if index > self.highest {
            return Ok(());
        }
        if self.highest - index >= WINDOW || self.is_marked(index) {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    /// Records an authenticated index that passed [`ReplayWindow::check`].
    pub(crate) fn accept(&mut self, index: u64) {
        if index > self.highest {
            if index - self.highest >= WINDOW {
                self.seen = [0; WORDS];
            } else {
                // The slots between the old and new highest now stand for newer indices.
                for skipped in self.highest + 1..index {
                    let (word, bit) = slot(skipped);
                    self.seen[word] &= !bit;
                }
            }
            self.highest = index;
        }
        self.mark(index);
    }

    fn mark(&mut self, index: u64) {
        let (word, bit) = slot(index);
        self.seen[word] |= bit;
    }

    fn is_marked(&self, index: u64) -> bool {
        let (word, bit) = slot(index);
        self.seen[word] & bit != 0
    }
}

fn slot(index: u64) -> (usize, u64) {
    let position = index % WINDOW;
    ((position / 64) as usize, 1 << (position % 64))
}

/// RFC 3711 Appendix A: the 48-bit index (ROC << 16 | SEQ) of a packet with sequence
/// number `seq`, taking the ROC (v) that puts it nearest to the highest index received.
pub(crate) fn estimate_rtp_index(highest: u64, seq: u16) -> u64 {
    let roc = highest >> 16;
    let s_l = u64::from(highest as u16);
    let seq = u64::from(seq);
    let v = if s_l < 0x8000 {
        if seq > s_l + 0x8000 {
            // From before the last wrap. Nothing precedes ROC 0: a sender at ROC 0 that
            // jumped forward by more than half the space is still at ROC 0.
            roc.saturating_sub(1)
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        // After a wrap. The ROC is 32 bits; 2^48 packets under one key is past any rekey.
        (roc + 1).min(u64::from(u32::MAX))
    } else {
        roc
    };
    v << 16 | seq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_follows_appendix_a_across_the_wrap() {
        let at = |roc: u64, seq: u16| roc << 16 | u64::from(seq);
        // In order, near the wrap.
        assert_eq!(estimate_rtp_index(at(0, 65534), 65535), at(0, 65535));
        assert_eq!(estimate_rtp_index(at(0, 65535), 0), at(1, 0));
        assert_eq!(estimate_rtp_index(at(0, 40000), 3), at(1, 3));
        // Late packets from before the wrap keep the old ROC.
        assert_eq!(estimate_rtp_index(at(1, 2), 65530), at(0, 65530));
        assert_eq!(estimate_rtp_index(at(1, 100), 40000), at(0, 40000));
        // Half the space either way.
        assert_eq!(
            estimate_rtp_index(at(1, 100), 100 + 0x8000),
            at(1, 100 + 0x8000)
        );
        assert_eq!(
            estimate_rtp_index(at(1, 100), 101 + 0x8000),
            at(0, 101 + 0x8000)
        );
        assert_eq!(estimate_rtp_index(at(3, 0x9000), 0x1000), at(3, 0x1000));
        assert_eq!(estimate_rtp_index(at(3, 0x9000), 0x0fff), at(4, 0x0fff));
        // Nothing before ROC 0.
        assert_eq!(estimate_rtp_index(at(0, 10), 60000), at(0, 60000));
    }

    #[test]
    fn window_accepts_each_index_once_and_refuses_what_fell_out() {
        let mut window = ReplayWindow::new(5000);
        assert_eq!(window.check(5000), Err(SrtpError::Replayed));
        // Out of order: newer, then the gap filled once.
        for index in [5002, 5001, 4990] {
            window.check(index).unwrap();
            window.accept(index);
            assert_eq!(window.check(index), Err(SrtpError::Replayed));
        }
        assert_eq!(window.highest(), 5002);
        // The oldest index still inside, and the first one outside.
        window.check(5002 - (WINDOW - 1)).unwrap();
        assert_eq!(window.check(5002 - WINDOW), Err(SrtpError::Replayed));
    }

    #[test]
    fn advancing_frees_the_slots_of_skipped_indices() {
        let mut window = ReplayWindow::new(0);
        for index in 1..WINDOW {
            window.accept(index);
        }
        // Every slot is now set. Jumping ahead by 10 must clear the slots of the 9 skipped
        // indices, which still hold the marks of the indices one window below them...
        window.accept(WINDOW + 9);
        for skipped in WINDOW..WINDOW + 9 {
            window.check(skipped).unwrap();
        }
        // ...and leave the rest of the window as it was.
        assert_eq!(window.check(WINDOW - 1), Err(SrtpError::Replayed));
        assert_eq!(window.check(10), Err(SrtpError::Replayed));
        assert_eq!(window.check(9), Err(SrtpError::Replayed)); // fell out
                                                               // A jump past the whole window forgets everything in it.
        window.accept(10 * WINDOW);
        window.check(10 * WINDOW - 1).unwrap();
        window.check(9 * WINDOW + 1).unwrap();
        assert_eq!(window.check(9 * WINDOW), Err(SrtpError::Replayed));
    }
}
