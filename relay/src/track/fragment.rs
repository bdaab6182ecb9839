//! Fitting H264 (RFC 6184) and H265 (RFC 7798) payloads to the WebRTC MTU, and the
//! aggregate of parameter sets sent before a keyframe that lacks them.
//!
//! Cameras over RTSP/TCP (interleaved) are not bound by a path MTU: a single NAL unit,
//! an aggregate or a fragment can be several kilobytes. Each payload is re-cut into
//! pieces of at most `max_payload` bytes; the caller sends each piece as its own packet,
//! with the original's timestamp and the marker (if it had one) only on the last.

use bytes::{BufMut, Bytes, BytesMut};

use super::{h264, h265, Codec};

/// The RTP payload size that WebRTC senders keep to (libwebrtc's default): room for
/// the RTP header, extensions and SRTP tag inside any path's MTU, TURN included.
pub const WEBRTC_MAX_PAYLOAD: usize = 1200;

/// Which payload format the NAL units travel in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NalFormat {
    H264,
    H265,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("an aggregate's NAL unit sizes overrun the payload")]
    BadAggregate,
    #[error("payload type {0} cannot be re-cut (interleaved modes are not supported)")]
    Unsupported(u8),
    #[error("max_payload {0} leaves no room for a fragment's data")]
    MaxTooSmall(usize),
}

/// What the payload is, by its first header's type field.
enum Kind {
    Single,
    Aggregate,
    Fragment,
    Other(u8),
}

impl NalFormat {
    /// The format of a codec whose payloads are NAL units.
    pub fn of(codec: Codec) -> Option<NalFormat> {
        match codec {
            Codec::H264 => Some(NalFormat::H264),
            Codec::H265 => Some(NalFormat::H265),
            _ => None,
        }
    }

    /// Bytes of a NAL unit header (the type and, for H265, layer and TID).
    fn header_len(self) -> usize {
        match self {
            NalFormat::H264 => 1,
            NalFormat::H265 => 2,
        }
    }

    /// A fragmentation unit's headers: FU indicator + FU header, or PayloadHdr + FU header.
    fn fu_header_len(self) -> usize {
        self.header_len() + 1
    }

    fn kind(self, payload: &[u8]) -> Kind {
        match self {
            NalFormat::H264 => match payload[0] & 0x1f {
                1..=23 => Kind::Single,
                h264::STAP_A => Kind::Aggregate,
                h264::FU_A => Kind::Fragment,
                t => Kind::Other(t),
            },
            NalFormat::H265 => match h265::nal_type(payload[0]) {
                0..=47 => Kind::Single,
                h265::AP => Kind::Aggregate,
                h265::FU => Kind::Fragment,
                t => Kind::Other(t),
            },
        }
    }

    /// The type field of a NAL unit header, as an FU header carries it.
    fn nal_type(self, header: &[u8]) -> u8 {
        match self {
            NalFormat::H264 => header[0] & 0x1f,
            NalFormat::H265 => h265::nal_type(header[0]),
        }
    }

    /// A NAL unit header like `like`'s (F, NRI or layer and TID) with type `t`.
    fn header_with_type(self, like: &[u8], t: u8, out: &mut BytesMut) {
        match self {
            NalFormat::H264 => out.put_u8((like[0] & 0xe0) | t),
            NalFormat::H265 => {
                out.put_u8((like[0] & 0x81) | (t << 1));
                out.put_u8(like[1]);
            }
        }
    }

    fn fu_type(self) -> u8 {
        match self {
            NalFormat::H264 => h264::FU_A,
            NalFormat::H265 => h265::FU,
        }
    }
}

/// Cuts `payload` into payloads of at most `max_payload` bytes: a single NAL unit into
/// fragmentation units, an aggregate into its NAL units (each cut in turn if it must
/// be), a fragmentation unit into smaller ones (start bit on the first, end bit on the
/// last, as the original had them). A payload that fits is returned as it is (a copy:
/// the pieces of one that does not are new payloads anyway, and a caller on the packet
/// path asks only for those).
pub fn fit(
    format: NalFormat,
    payload: &[u8],
    max_payload: usize,
) -> Result<Vec<Bytes>, FragmentError> {
    if payload.len() <= max_payload {
        return Ok(vec![Bytes::copy_from_slice(payload)]);
    }
    if max_payload <= format.fu_header_len() {
        return Err(FragmentError::MaxTooSmall(max_payload));
    }
    let mut out = Vec::new();
    match format.kind(payload) {
        Kind::Single => fragment_nal(format, payload, max_payload, &mut out),
        Kind::Aggregate => {
            for nal in aggregated_nal_units(payload, format.header_len()) {
                out.extend(fit(format, nal?, max_payload)?);
            }
        }
        Kind::Fragment => {
            let (headers, data) = payload.split_at(format.fu_header_len());
            let fu_header = headers[format.header_len()];
            let (start, end) = (fu_header & 0x80, fu_header & 0x40);
            let pieces = split(data, max_payload - headers.len());
            let last = pieces.len() - 1;
            for (i, piece) in pieces.enumerate() {
                let mut p = BytesMut::with_capacity(headers.len() + piece.len());
                p.put_slice(&headers[..format.header_len()]);
                let s = if i == 0 { start } else { 0 };
                let e = if i == last { end } else { 0 };
                p.put_u8((fu_header & 0x3f) | s | e);
                p.put_slice(piece);
                out.push(p.freeze());
            }
        }
        Kind::Other(t) => return Err(FragmentError::Unsupported(t)),
    }
    Ok(out)
}

/// Fragmentation units of one NAL unit (RFC 6184 5.8, RFC 7798 4.4.3).
fn fragment_nal(format: NalFormat, nal: &[u8], max_payload: usize, out: &mut Vec<Bytes>) {
    let (header, data) = nal.split_at(format.header_len());
    let nal_type = format.nal_type(header);
    let pieces = split(data, max_payload - format.fu_header_len());
    let last = pieces.len() - 1;
    for (i, piece) in pieces.enumerate() {
        let mut p = BytesMut::with_capacity(format.fu_header_len() + piece.len());
        format.header_with_type(header, format.fu_type(), &mut p);
        let s = if i == 0 { 0x80 } else { 0 };
        let e = if i == last { 0x40 } else { 0 };
        p.put_u8(s | e | nal_type);
        p.put_slice(piece);
        out.push(p.freeze());
    }
}

/// `data` in pieces of at most `size` bytes, of near-equal lengths (so that no packet
/// of the burst is a runt).
fn split(data: &[u8], size: usize) -> std::slice::Chunks<'_, u8> {
    let count = data.len().div_ceil(size).max(1);
    data.chunks(data.len().div_ceil(count).max(1))
}

/// The NAL units of a STAP-A or AP (`header_len`: 1 or 2), as slices of it, up to the
/// first that is shorter than a NAL unit header or overruns the payload.
pub fn aggregated_nal_units(
    payload: &[u8],
    header_len: usize,
) -> impl Iterator<Item = Result<&[u8], FragmentError>> + '_ {
    let mut at = header_len;
    std::iter::from_fn(move || {
        if at >= payload.len() {
            return None;
        }
        let nal = payload
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
            .filter(|&len| len >= header_len && at + 2 + len <= payload.len())
            .map(|len| &payload[at + 2..at + 2 + len]);
        at = match &nal {
            Some(nal) => at + 2 + nal.len(),
            // Nothing after the damage can be trusted.
            None => payload.len(),
        };
        Some(nal.ok_or(FragmentError::BadAggregate))
    })
}

/// The payloads that carry `nals` (parameter sets) before a keyframe: one STAP-A (H264)
/// or AP (H265) if it fits in `max_payload`, else each NAL unit on its own (cut to fit).
pub fn parameter_set_payloads(
    format: NalFormat,
    nals: &[&Bytes],
    max_payload: usize,
) -> Result<Vec<Bytes>, FragmentError> {
    let aggregate_len = format.header_len() + nals.iter().map(|n| 2 + n.len()).sum::<usize>();
    let fits = aggregate_len <= max_payload && nals.len() > 1;
    if !fits
        || nals
            .iter()
            .any(|n| n.len() < format.header_len() || n.len() > 0xffff)
    {
        let mut out = Vec::new();
        for nal in nals {
            out.extend(fit(format, nal, max_payload)?);
        }
        return Ok(out);
    }
    let mut p = BytesMut::with_capacity(aggregate_len);
    match format {
        // F is set if any member has it; NRI is the highest (RFC 6184 5.7.1).
        NalFormat::H264 => {
            let fnri = nals.iter().fold(0, |acc, n| acc | (n[0] & 0x80))
                | nals.iter().map(|n| n[0] & 0x60).max().unwrap_or(0);
            p.put_u8(fnri | h264::STAP_A);
        }
        // F if any member has it; the lowest LayerId and TID (RFC 7798 4.4.2).
        NalFormat::H265 => {
            let f = nals.iter().fold(0, |acc, n| acc | (n[0] & 0x80));
            let layer = nals
                .iter()
                .map(|n| (u16::from(n[0] & 1) << 5) | u16::from(n[1] >> 3))
                .min()
                .unwrap_or(0);
            let tid = nals.iter().map(|n| n[1] & 0x07).min().unwrap_or(1);
            p.put_u8(f | (h265::AP << 1) | (layer >> 5) as u8);
            p.put_u8((((layer & 0x1f) as u8) << 3) | tid);
        }
    }
    for nal in nals {
        p.put_u16(nal.len() as u16);
        p.put_slice(nal);
    }
    Ok(vec![p.freeze()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Joins fragmentation units back into the NAL unit, checking their start/end bits.
    fn reassemble(format: NalFormat, pieces: &[Bytes]) -> Vec<u8> {
        let hl = format.header_len();
        let mut nal = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            assert!(matches!(format.kind(p), Kind::Fragment));
            let fu_header = p[hl];
            assert_eq!(fu_header & 0x80 != 0, i == 0, "start bit on the first only");
            assert_eq!(
                fu_header & 0x40 != 0,
                i == pieces.len() - 1,
                "end bit on the last only"
            );
            if i == 0 {
                let mut header = BytesMut::new();
                format.header_with_type(p, fu_header & 0x3f, &mut header);
                nal.extend_from_slice(&header);
            }
            nal.extend_from_slice(&p[hl + 1..]);
        }
        nal
    }

    fn nal(format: NalFormat, len: usize) -> Bytes {
        let header: &[u8] = match format {
            // NRI 3, IDR.
            NalFormat::H264 => &[0x65, 0x88],
            // IDR_W_RADL, layer 0, TID 1; the slice header opens the picture.
            NalFormat::H265 => &[19 << 1, 1, 0xaf],
        };
        let mut n = header.to_vec();
        n.extend((0..len - header.len()).map(|i| (i * 7 + 3) as u8));
        Bytes::from(n)
    }

    #[test]
    fn h264_idr_becomes_fu_a() {
        let idr = nal(NalFormat::H264, 3000);
        let pieces = fit(NalFormat::H264, &idr, 1200).unwrap();
        assert_eq!(pieces.len(), 3);
        // FU indicator: NRI of the NAL (3), type 28; FU header: S, type 5.
        assert_eq!(pieces[0][..2], [0x60 | 28, 0x80 | 5]);
        assert_eq!(pieces[1][1], 5);
        assert_eq!(pieces[2][1], 0x40 | 5);
        assert!(pieces.iter().all(|p| p.len() <= 1200));
        assert_eq!(reassemble(NalFormat::H264, &pieces), idr);
        // h264::summarize still finds the keyframe in the first piece.
        assert!(h264::summarize(&pieces[0]).keyframe);
    }

    #[test]
    fn h265_idr_becomes_fus_keeping_layer_and_tid() {
        let idr = nal(NalFormat::H265, 2500);
        let pieces = fit(NalFormat::H265, &idr, 1000).unwrap();
        assert_eq!(pieces.len(), 3);
        // PayloadHdr: type 49, layer 0, TID 1; FU header: S, type 19.
        assert_eq!(pieces[0][..3], [49 << 1, 1, 0x80 | 19]);
        assert!(pieces.iter().all(|p| p.len() <= 1000));
        assert_eq!(reassemble(NalFormat::H265, &pieces), idr);
        assert!(h265::summarize(&pieces[0]).keyframe);
    }

    #[test]
    fn big_fu_a_is_cut_into_smaller_ones() {
        let idr = nal(NalFormat::H264, 20_000);
        // A camera over TCP: 8 KB fragments.
        let big = fit(NalFormat::H264, &idr, 8000).unwrap();
        assert_eq!(big.len(), 3);
        let small: Vec<Bytes> = big
            .into_iter()
            .flat_map(|p| fit(NalFormat::H264, &p, 1200).unwrap())
            .collect();
        assert!(small.iter().all(|p| p.len() <= 1200));
        assert_eq!(reassemble(NalFormat::H264, &small), idr);
    }

    #[test]
    fn big_aggregate_is_split_into_its_nal_units() {
        let (sps, pps, idr) = (
            Bytes::from_static(&[0x67, 0x42, 0xe0, 0x1f]),
            Bytes::from_static(&[0x68, 0xce]),
            nal(NalFormat::H264, 2000),
        );
        let mut stap = vec![0x78];
        for n in [&sps, &pps, &idr] {
            stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            stap.extend_from_slice(n);
        }
        let pieces = fit(NalFormat::H264, &stap, 1200).unwrap();
        assert_eq!(pieces[0], sps);
        assert_eq!(pieces[1], pps);
        assert_eq!(reassemble(NalFormat::H264, &pieces[2..]), idr);
        assert!(pieces.iter().all(|p| p.len() <= 1200));
    }

    /// The NAL units of an aggregate are slices of it, and input cut short anywhere
    /// (nothing after the header, half a length, a length past the end) ends the walk
    /// with an error, never a slice past the payload.
    #[test]
    fn aggregated_nal_units_of_cut_input_stop_at_the_damage() {
        fn units(p: &[u8]) -> Vec<Result<&[u8], FragmentError>> {
            aggregated_nal_units(p, 1).collect()
        }
        assert!(units(&[]).is_empty());
        assert!(units(&[0x78]).is_empty());
        assert_eq!(units(&[0x78, 0]), [Err(FragmentError::BadAggregate)]);
        assert_eq!(
            units(&[0x78, 0, 5, 0x67]),
            [Err(FragmentError::BadAggregate)]
        );
        let stap = [0x78, 0, 2, 0x67, 1, 0, 3, 0x68];
        assert_eq!(
            units(&stap),
            [Ok(&stap[3..5]), Err(FragmentError::BadAggregate)]
        );
    }

    #[test]
    fn malformed_or_unsupported_payloads_are_errors() {
        // Nothing to cut, whatever the size asked for.
        for format in [NalFormat::H264, NalFormat::H265] {
            assert_eq!(fit(format, &[], 0), Ok(vec![Bytes::new()]));
            assert_eq!(fit(format, &[0x7c], 0), Err(FragmentError::MaxTooSmall(0)));
        }
        let stap = Bytes::from_static(&[0x78, 0, 9, 0x67, 1, 2]);
        assert_eq!(
            fit(NalFormat::H264, &stap, 4),
            Err(FragmentError::BadAggregate)
        );
        let mtap = Bytes::from(vec![26; 50]);
        assert_eq!(
            fit(NalFormat::H264, &mtap, 20),
            Err(FragmentError::Unsupported(26))
        );
        let paci = Bytes::from(vec![50 << 1, 1, 0, 0, 0, 0]);
        assert_eq!(
            fit(NalFormat::H265, &paci, 5),
            Err(FragmentError::Unsupported(50))
        );
        let idr = nal(NalFormat::H265, 100);
        assert_eq!(
            fit(NalFormat::H265, &idr, 3),
            Err(FragmentError::MaxTooSmall(3))
        );
        let fits = Bytes::from_static(&[0x41, 1]);
        assert_eq!(fit(NalFormat::H264, &fits, 2).unwrap(), [fits]);
    }

    #[test]
    fn parameter_sets_go_in_one_aggregate() {
        let sps = Bytes::from_static(&[0x67, 0x42, 0xe0, 0x1f]);
        let pps = Bytes::from_static(&[0x68, 0xce]);
        let p = parameter_set_payloads(NalFormat::H264, &[&sps, &pps], 1200).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(
            &p[0][..],
            &[0x78, 0, 4, 0x67, 0x42, 0xe0, 0x1f, 0, 2, 0x68, 0xce]
        );
        let s = h264::summarize(&p[0]);
        assert_eq!((s.sps, s.pps), (Some(sps.clone()), Some(pps.clone())));
        // Too big for one packet: each on its own.
        let p = parameter_set_payloads(NalFormat::H264, &[&sps, &pps], 8).unwrap();
        assert_eq!(p, [sps, pps]);

        // H265: VPS, SPS, PPS at TID 1 and layer 0.
        let vps = Bytes::from_static(&[32 << 1, 1, 0xc]);
        let sps = Bytes::from_static(&[33 << 1, 1, 0x1, 0x1]);
        let pps = Bytes::from_static(&[34 << 1, 1, 0xc1]);
        let p = parameter_set_payloads(NalFormat::H265, &[&vps, &sps, &pps], 1200).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0][..2], [48 << 1, 1]);
        let s = h265::summarize(&p[0]);
        assert_eq!((s.vps, s.sps, s.pps), (Some(vps), Some(sps), Some(pps)));
    }

    proptest! {
        #[test]
        fn fragments_fit_and_reassemble(
            h265 in any::<bool>(),
            len in 3usize..20_000,
            max in 4usize..3000,
        ) {
            let format = if h265 { NalFormat::H265 } else { NalFormat::H264 };
            let original = nal(format, len);
            let pieces = fit(format, &original, max).unwrap();
            prop_assert!(pieces.iter().all(|p| p.len() <= max));
            if len <= max {
                prop_assert_eq!(&pieces, &[original]);
            } else {
                prop_assert_eq!(reassemble(format, &pieces), original.to_vec());
                // Re-cutting the fragments smaller keeps the NAL unit too.
                let smaller: Vec<Bytes> = pieces
                    .into_iter()
                    .flat_map(|p| fit(format, &p, (max / 2).max(4)).unwrap())
                    .collect();
                prop_assert_eq!(reassemble(format, &smaller), original.to_vec());
            }
        }

        #[test]
        fn arbitrary_payloads_never_panic(
            h265 in any::<bool>(),
            payload in prop::collection::vec(any::<u8>(), 0..400),
            max in 0usize..300,
        ) {
            let format = if h265 { NalFormat::H265 } else { NalFormat::H264 };
            if let Ok(pieces) = fit(format, &payload, max) {
                prop_assert!(pieces.iter().all(|p| p.len() <= max));
            }
        }
    }
}
