//! The two SRTP contexts of a session: [`Outbound`] seals what we send, [`Inbound`] opens
//! what the peer sends, with its per-SSRC index estimation and replay windows.

use super::keys::{MasterKey, PacketKind, SessionKeys};
use super::replay::{estimate_rtp_index, ReplayWindow};
use super::transform::{be_u16, be_u32, Transform, E_FLAG, RTCP_HEADER_LEN};
use super::{Profile, SrtpError};

/// Fixed RTP header up to and including the SSRC.
const RTP_FIXED_HEADER_LEN: usize = 12;
/// Largest SRTCP index (31 bits): one more would repeat an IV under the same key.
const MAX_SRTCP_INDEX: u32 = !E_FLAG;
/// SSRCs one peer may send from (audio, video, RTX, simulcast layers, FEC) with room to
/// spare; each costs a replay window (136 bytes).
const MAX_SOURCES: usize = 32;

/// Our sending context: one per session, shared by all the SSRCs we send.
pub struct Outbound {
    profile: Profile,
    rtp: Transform,
    rtcp: Transform,
    /// The next SRTCP index. One counter for all our SSRCs: each SSRC's indices still
    /// increase, and the IV includes the SSRC.
    srtcp_index: u32,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("profile", &self.profile())
            .finish_non_exhaustive()
    }
}

impl Outbound {
    pub fn new(key: &MasterKey) -> Outbound {
        Outbound {
            profile: key.profile(),
            rtp: Transform::new(&SessionKeys::derive(key, PacketKind::Rtp)),
            rtcp: Transform::new(&SessionKeys::derive(key, PacketKind::Rtcp)),
            srtcp_index: 0,
        }
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Seals the RTP packet `packet[..len]` in place: encrypts `packet[header_len..len]`
    /// (the header is authenticated, and for GCM is the AAD) and appends the tag. `roc` is
    /// the rollover counter of the packet's SSRC at its sequence number. Returns the
    /// protected length, `len + profile.rtp_overhead()`.
    ///
    /// The fast path: no allocation, no branch on packet contents.
    ///
    /// # Panics
    /// If `packet` is shorter than `len + rtp_overhead()` or `header_len` is not within
    /// `12..=len`: the caller builds these packets, so that is a bug, not bad input.
    #[inline]
    pub fn protect_rtp(&self, packet: &mut [u8], header_len: usize, len: usize, roc: u32) -> usize {
        assert!(
            (RTP_FIXED_HEADER_LEN..=len).contains(&header_len)
                && len + self.profile.rtp_overhead() <= packet.len(),
            "RTP packet layout: header {header_len}, length {len}, buffer {}",
            packet.len()
        );
        self.rtp.seal_rtp(packet, header_len, len, roc)
    }

    /// Seals the compound RTCP packet `packet[..len]` in place: encrypts all but its first
    /// 8 bytes, appends the E flag | SRTCP index and the tag, and advances the SRTCP index.
    /// Returns the protected length, `len + profile.rtcp_overhead()`.
    pub fn protect_rtcp(&mut self, packet: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        if len < RTCP_HEADER_LEN || len + self.profile.rtcp_overhead() > packet.len() {
            return Err(SrtpError::TooShort);
        }
        if self.srtcp_index > MAX_SRTCP_INDEX {
            return Err(SrtpError::IndexExhausted);
        }
        let protected = self.rtcp.seal_rtcp(packet, len, self.srtcp_index);
        self.srtcp_index += 1;
        Ok(protected)
    }
}

/// The peer's sending context, which we open: replay windows per sender SSRC.
pub struct Inbound {
    profile: Profile,
    rtp: Transform,
    rtcp: Transform,
    rtp_sources: Sources,
    rtcp_sources: Sources,
}

impl Inbound {
    pub fn new(key: &MasterKey) -> Inbound {
        Inbound::with_session_keys(
            &SessionKeys::derive(key, PacketKind::Rtp),
            &SessionKeys::derive(key, PacketKind::Rtcp),
        )
    }

    pub(crate) fn with_session_keys(rtp: &SessionKeys, rtcp: &SessionKeys) -> Inbound {
        Inbound {
            profile: rtp.profile,
            rtp: Transform::new(rtp),
            rtcp: Transform::new(rtcp),
            rtp_sources: Sources::default(),
            rtcp_sources: Sources::default(),
        }
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Opens the SRTP packet `packet` (the whole datagram) in place and returns the
    /// plaintext length (header and payload; padding, if any, is left to the caller).
    /// The packet index comes from the SSRC's highest index so far (RFC 3711 Appendix A);
    /// nothing in the packet is trusted, nor any state changed, before the tag matches.
    /// On error the packet's bytes are unspecified.
    pub fn unprotect_rtp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let header_len = rtp_header_len(packet)
            .filter(|header_len| header_len + self.profile.rtp_overhead() <= packet.len())
            .ok_or(SrtpError::TooShort)?;
        let seq = be_u16(packet, 2);
        let ssrc = be_u32(packet, 8);
        // A new SSRC starts at ROC 0 (RFC 3711 3.3.1).
        let index = self
            .rtp_sources
            .window(ssrc)
            .map_or(u64::from(seq), |window| {
                estimate_rtp_index(window.highest(), seq)
            });
        self.rtp_sources.check(ssrc, index)?;
        let len = self
            .rtp
            .open_rtp(packet, header_len, (index >> 16) as u32)?;
        self.rtp_sources.accept(ssrc, index);
        Ok(len)
    }

    /// Opens the SRTCP packet `packet` (the whole datagram) in place and returns the length
    /// of the compound RTCP packet within. Packets sent authenticated but unencrypted (E
    /// flag clear) are accepted too. On error the packet's bytes are unspecified.
    pub fn unprotect_rtcp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        if packet.len() < RTCP_HEADER_LEN + self.profile.rtcp_overhead() {
            return Err(SrtpError::TooShort);
        }
        let ssrc = be_u32(packet, 4);
        let word = self.rtcp.srtcp_word(packet);
        let index = u64::from(word & !E_FLAG);
        self.rtcp_sources.check(ssrc, index)?;
        let len = self.rtcp.open_rtcp(packet, word)?;
        self.rtcp_sources.accept(ssrc, index);
        Ok(len)
    }
}

/// RFC 3550 5.1: fixed header, CSRCs, and the header extension if the X bit is set.
/// None if the packet ends before the header does.
fn rtp_header_len(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    let mut len = RTP_FIXED_HEADER_LEN + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (len <= packet.len()).then_some(len)
}

/// Replay windows by sender SSRC. A short vector: a peer sends from a handful of SSRCs,
/// and a linear scan of those beats hashing.
#[derive(Default)]
struct Sources(Vec<(u32, ReplayWindow)>);

impl Sources {
    fn window(&self, ssrc: u32) -> Option<&ReplayWindow> {
        self.0
            .iter()
            .find_map(|(known, window)| (*known == ssrc).then_some(window))
    }

    /// Refuses a replayed index; an unknown SSRC passes while there is room for it.
    fn check(&self, ssrc: u32, index: u64) -> Result<(), SrtpError> {
        match self.window(ssrc) {
            Some(window) => window.check(index),
            None if self.0.len() >= MAX_SOURCES => Err(SrtpError::TooManySources),
            None => Ok(()),
        }
    }

    /// Records an authenticated index that passed [`Sources::check`]. A new SSRC allocates
    /// here, once, after its first packet authenticated.
    fn accept(&mut self, ssrc: u32, index: u64) {
        match self.0.iter_mut().find(|(known, _)| *known == ssrc) {
            Some((_, window)) => window.accept(index),
            None => self.0.push((ssrc, ReplayWindow::new(index))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_srtcp_index_stops_before_it_would_repeat() {
        let key = MasterKey::new(Profile::AeadAes128Gcm, &[1; 16], &[2; 12]).unwrap();
        let mut outbound = Outbound::new(&key);
        outbound.srtcp_index = MAX_SRTCP_INDEX;
        let mut packet = [
            0x80, 201, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let protected = outbound.protect_rtcp(&mut packet, 8).unwrap();
        assert_eq!(packet[protected - 4..protected], [0xff; 4]);
        assert_eq!(
            outbound.protect_rtcp(&mut packet, 8),
            Err(SrtpError::IndexExhausted)
        );
    }

    #[test]
    fn header_length_counts_csrcs_and_the_extension() {
        let mut packet = vec![0x80; 12];
        assert_eq!(rtp_header_len(&packet), Some(12));
        packet[0] = 0x82; // 2 CSRCs, missing
        assert_eq!(rtp_header_len(&packet), None);
        packet.extend_from_slice(&[0; 8]);
        assert_eq!(rtp_header_len(&packet), Some(20));
        packet[0] = 0x92; // and an extension, its header missing
        assert_eq!(rtp_header_len(&packet), None);
        packet.extend_from_slice(&[0xbe, 0xde, 0, 1]);
        assert_eq!(rtp_header_len(&packet), None); // one word announced, none there
        packet.extend_from_slice(&[0; 4]);
        assert_eq!(rtp_header_len(&packet), Some(28));
        assert_eq!(rtp_header_len(&[]), None);
    }
}
