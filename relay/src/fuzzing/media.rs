//! Media as sources and viewers send it: RTP pushed to an ingest port (`rtp_ingest`),
//! viewers' RTCP (`rtcp_compound`), and the track history under any numbering a
//! source may use (`track_history`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::ingest::rtp::{self, Counters, RtpDemux};
use crate::session::rtcp::{self, Feedback, SenderInfo};
use crate::track::history::{Retention, MAX_PACKETS};
use crate::track::rewrite::Rewrite;
use crate::track::{Codec, SourcePacket, Track, TrackInfo};

use super::{records, start, wide_records};

/// The tracks an `rtpSDP` may announce, by payload type.
const PUSHED: [(u8, Codec); 5] = [
    (96, Codec::H264),
    (97, Codec::H265),
    (98, Codec::Vp8),
    (111, Codec::Opus),
    (0, Codec::Pcmu),
];

/// Datagrams to one RTP ingest port carrying the tracks of [`PUSHED`]: records of an
/// op byte (the milliseconds since the previous datagram) and a 16-bit length.
///
/// The parser's payload lies within the datagram after the fixed header; every
/// datagram is counted once, as received, malformed, of an unknown payload type or
/// RTCP; a received packet is the newest of its track (or a duplicate), with the
/// payload it came with; every track's history stays consistent ([`check_track`]).
pub fn rtp_ingest(data: &[u8]) {
    let (tracks, writers): (Vec<_>, Vec<_>) = PUSHED
        .iter()
        .map(|&(pt, codec)| {
            let (track, writer) = Track::new(info(codec), Retention::default());
            (track, (pt, writer))
        })
        .unzip();
    let mut demux = RtpDemux::new(writers);
    let counters = Counters::default();
    let mut now = start();
    let mut datagrams = 0;
    for (op, datagram) in wide_records(data) {
        now += Duration::from_millis(op.into());
        let before: Vec<(u64, u64)> = tracks.iter().map(|t| (t.head(), duplicates(t))).collect();
        demux.on_datagram(datagram, now, &counters);
        datagrams += 1;
        let parsed = rtp::parse(datagram);
        if let Ok(p) = parsed {
            let offset = p.payload.as_ptr() as usize - datagram.as_ptr() as usize;
            assert!(offset >= 12 && offset + p.payload.len() <= datagram.len());
            assert_eq!(p.seq, u16::from_be_bytes([datagram[2], datagram[3]]));
        }
        let routed = parsed
            .ok()
            .filter(|_| !rtp::is_rtcp(datagram))
            .and_then(|p| Some((PUSHED.iter().position(|(pt, _)| *pt == p.payload_type)?, p)));
        for (i, track) in tracks.iter().enumerate() {
            let (head, dups) = before[i];
            match routed {
                Some((to, p)) if to == i => {
                    if track.head() == head + 1 {
                        let newest = track.get(head).expect("the newest packet is held");
                        assert_eq!(&newest.payload[..], p.payload);
                        assert_eq!(newest.marker, p.marker);
                    } else {
                        assert_eq!((track.head(), duplicates(track)), (head, dups + 1));
                    }
                }
                _ => assert_eq!(track.head(), head, "a packet went to the wrong track"),
            }
        }
    }
    let counted = [
        &counters.received,
        &counters.malformed,
        &counters.unknown_payload_type,
        &counters.rtcp,
    ]
    .iter()
    .map(|c| c.load(Ordering::Relaxed))
    .sum::<u64>();
    assert_eq!(counted, datagrams, "every datagram is counted once");
    for track in &tracks {
        check_track(track, None);
    }
}

/// A viewer's compound RTCP (decrypted): everything reported lies within it, a NACK
/// names its packet and one more per bit, round trips stay within the 2^31 ticks of
/// the NTP middle, and a compound with our own sender report in front reads the same.
pub fn rtcp_compound(data: &[u8]) {
    let mut items = Vec::new();
    let result = rtcp::parse_compound(data, &mut |f| items.push(f));
    assert!(items.len() <= data.len() / 4, "{} items", items.len());
    for f in &items {
        match *f {
            Feedback::Nack { pid, blp, .. } => {
                let named: Vec<u16> = rtcp::nacked(pid, blp).collect();
                assert_eq!(named.len(), 1 + blp.count_ones() as usize);
                assert_eq!(named[0], pid);
            }
            Feedback::Report(block) => {
                let arrival = u64::from_be_bytes(*data.first_chunk().unwrap_or(&[0; 8]));
                if let Some(rtt) =
                    rtcp::round_trip(arrival, block.last_sr, block.delay_since_last_sr)
                {
                    assert!(rtt <= Duration::from_secs(1 << 15), "{rtt:?}");
                }
            }
            Feedback::KeyframeRequest { .. } => {}
        }
    }
    // Ours in front: an SR and SDES with a CNAME taken from the input.
    let cname = String::from_utf8_lossy(&data[..data.len().min(40)]);
    let sr = SenderInfo {
        ssrc: 1,
        ntp: data.len() as u64,
        rtp_time: 2,
        packets: 3,
        octets: 4,
    };
    let mut buf = vec![0; 28 + 12 + 4 * cname.len() + 4 + data.len()];
    let ours = rtcp::write_sender_report(&mut buf, &sr, &cname);
    buf.truncate(ours);
    assert_eq!(
        rtcp::parse_compound(&buf, &mut |f| panic!("{f:?} in our SR")),
        Ok(())
    );
    buf.extend_from_slice(data);
    let mut again = Vec::new();
    assert_eq!(rtcp::parse_compound(&buf, &mut |f| again.push(f)), result);
    assert_eq!(again, items);
}

/// A track's history fed packets from up to four sources (SSRCs) numbered as the bytes
/// say: the first byte picks the codec and the retention (history duration and bytes,
/// keyframe cache), then records of an op byte (bits 0-1 the source, 2 the marker,
/// 3-7 the milliseconds since the previous packet, times 8) and a payload whose first
/// three bytes move the source's sequence number (signed 16 bits) and timestamp.
///
/// A packet is published as the newest (findable by its sequence number) or counted
/// as a duplicate; the history stays consistent ([`check_track`]); a viewer's
/// numbering maps every NACKable sequence number back to its packet.
pub fn track_history(data: &[u8]) {
    let Some((&setup, rest)) = data.split_first() else {
        return;
    };
    let codec = [
        Codec::H264,
        Codec::H265,
        Codec::Vp8,
        Codec::Vp9,
        Codec::Av1,
        Codec::Opus,
    ][usize::from(setup & 7) % 6];
    let retention = Retention {
        duration: Duration::from_millis(50 << (setup >> 3 & 3)),
        max_bytes: 256 << (2 * (setup >> 5 & 3)),
        keyframe_cache: setup & 0x80 != 0,
    };
    let (track, mut writer) = Track::new(info(codec), retention);
    let mut now = start();
    let mut sources = [(0u16, 0u32); 4];
    for (op, payload) in records(rest) {
        now += Duration::from_millis(u64::from(op >> 3) * 8);
        let source = usize::from(op & 3);
        let (seq, ts) = &mut sources[source];
        let [a, b, c, ..] = *payload else {
            continue;
        };
        *seq = seq.wrapping_add(u16::from_be_bytes([a, b]));
        *ts = ts.wrapping_add(u32::from(c) * 300);
        let packet = SourcePacket {
            ssrc: 0x5000 + source as u32,
            seq: *seq,
            timestamp: *ts,
            marker: op & 4 != 0,
            payload: &payload[3..],
            arrival: now,
        };
        let (head, dups) = (track.head(), duplicates(&track));
        let published = writer.push(packet);
        if published {
            assert_eq!(track.head(), head + 1);
            let newest = track.get(head).expect("the newest packet is held");
            assert_eq!(
                (&newest.payload[..], newest.marker),
                (packet.payload, packet.marker)
            );
            let found = track
                .by_seq(newest.seq)
                .expect("found by its sequence number");
            assert_eq!(found.index, head);
        } else {
            assert_eq!((track.head(), duplicates(&track)), (head, dups + 1));
        }
        // A duplicate lets nothing go: the duration is checked after a publication.
        let oldest = check_track(&track, published.then_some(now));
        if op & 0xf8 == 0xf8 {
            nacks_find_their_packets(&track, oldest);
        }
    }
    nacks_find_their_packets(&track, check_track(&track, None));
}

/// What must hold of any track's history: `tail..head` are all held, in order of
/// index; the held-packets and held-bytes gauges agree with them; the history keeps to
/// its byte and packet bounds (the newest packet alone may exceed the bytes), and, at
/// `now` (the newest packet's arrival), the oldest packet is within the duration
/// unless the keyframe cache keeps it.
/// Returns the oldest packet's index.
pub(super) fn check_track(track: &Track, now: Option<std::time::Instant>) -> Option<u64> {
    let (tail, head) = (track.tail(), track.head());
    assert!(tail <= head && head - tail <= MAX_PACKETS);
    let stats = &track.stats;
    assert_eq!(
        stats.held_packets.load(Ordering::Relaxed),
        head - tail.min(head)
    );
    let mut bytes = 0;
    for i in tail..head {
        let p = track
            .get(i)
            .unwrap_or_else(|| panic!("{i} of {tail}..{head} is gone"));
        assert_eq!(p.index, i);
        bytes += p.payload.len();
    }
    if head > 0 {
        assert_eq!(stats.held_bytes.load(Ordering::Relaxed), bytes as u64);
        assert!(
            bytes <= track.retention.max_bytes || head - tail == 1,
            "{bytes} bytes held"
        );
    }
    let keyframe = track.last_keyframe();
    if let Some(k) = keyframe {
        assert!(k.index < head);
    }
    let oldest = track.get(tail)?;
    if let Some(now) = now {
        let cached = track.retention.keyframe_cache && keyframe.is_some_and(|k| k.index <= tail);
        let age = now.saturating_duration_since(oldest.arrival);
        assert!(
            age <= track.retention.duration || cached || tail + 1 == head,
            "packet {tail} held at {age:?}"
        );
    }
    Some(tail)
}

/// A viewer that started at the oldest packet: each held packet it could NACK (within
/// 2^15 of its newest) maps back to that packet's track sequence number.
fn nacks_find_their_packets(track: &Track, oldest: Option<u64>) {
    let Some(first) = oldest.and_then(|i| track.get(i)) else {
        return;
    };
    let rewrite = Rewrite::starting_at(&first, 1, 96, 0x1234, 0);
    // Packets numbered before the first never went to this viewer.
    let held: Vec<_> = track
        .range(first.index, track.head())
        .filter(|p| p.seq >= first.seq)
        .collect();
    let Some(newest) = held.iter().map(|p| rewrite.seq(p.seq)).max() else {
        return;
    };
    for p in &held {
        let out = rewrite.seq(p.seq);
        if newest - out < 1 << 15 {
            assert_eq!(rewrite.track_seq(out as u16, newest), Some(p.seq));
        }
    }
}

fn info(codec: Codec) -> TrackInfo {
    TrackInfo {
        codec,
        fmtp: String::new(),
    }
}

fn duplicates(track: &Arc<Track>) -> u64 {
    track.stats.duplicates.load(Ordering::Relaxed)
}
