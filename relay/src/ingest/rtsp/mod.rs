//! RTSP pull (`source: rtsp://...`): one tokio task per path keeps a camera's stream
//! flowing into the path's tracks, reconnecting with backoff, or connecting only while
//! viewers watch (`sourceOnDemand`).
//!
//! The RTSP client is retina. Its packet-level stream hands over the camera's RTP
//! payloads as they came, so H264 and H265 go to viewers without depacketizing and
//! repacketizing (passthrough); the track writer re-bases numbering when the camera
//! comes back with a new SSRC or sequence, so viewers watching across a reconnect go on
//! without renegotiating.

mod schedule;
mod url;
mod wakes;

pub use wakes::SpacedWakes;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use retina::client::{
    InitialTimestampPolicy, PacketItem, PlayOptions, Playing, Session, SessionOptions,
    SetupOptions, Transport,
};
use serde::{Deserialize, Serialize};
use std::time::Instant;

use super::demo::PACKET_OVERHEAD;
use super::sdp;
use super::PathCounters;
use crate::audio::{AacToOpus, OpusSource};
use crate::paths::{PathState, ServedPath};
use crate::track::fragment::{self, NalFormat};
use crate::track::{Codec, ParameterSets, SourcePacket, TrackInfo, TrackWriter};
pub use schedule::{Backoff, CloseAfter};
pub use url::RtspUrl;

/// `rtspTransport`: how the camera sends RTP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// UDP first; TCP when the camera refuses UDP or no media arrives over it.
    #[default]
    Automatic,
    Udp,
    /// Interleaved in the RTSP connection.
    Tcp,
}

/// What a path's RTSP task is given.
#[derive(Debug, Clone)]
pub struct RtspOptions {
    pub transport: RtspTransport,
    /// `sourceOnDemandCloseAfter` of an on-demand path; `None`: always connected.
    pub close_after: Option<Duration>,
    /// `readTimeout`: the most time without media (or for the RTSP requests before it)
    /// before the camera counts as gone.
    pub read_timeout: Duration,
    /// `udpMaxPayloadSize`: payloads that would not fit viewers' packets.
    pub max_payload: usize,
    /// The path was made from a pattern for its viewers (on demand): the source ends,
    /// rather than idles, once they are gone, and with it the path.
    pub ends_unwatched: bool,
}

/// Packets taken from the session per turn before the workers are woken.
const BATCH: usize = 64;

/// Runs the path's RTSP source until the path is closed (or, made from a pattern, no
/// longer watched). Failures are the path's state, never the relay's end.
pub async fn run(
    path: Arc<ServedPath>,
    url: RtspUrl,
    opts: RtspOptions,
    wakers: Arc<SpacedWakes>,
    counters: PathCounters,
) {
    let mut source = RtspSource {
        path: path.clone(),
        url,
        opts,
        wakers,
        counters,
        udp_failed: false,
        connections: 0,
    };
    // Dropping the connection's future closes the camera's connection.
    tokio::select! {
        () = source.run() => {}
        () = path.closed() => {}
    }
}

struct RtspSource {
    path: Arc<ServedPath>,
    url: RtspUrl,
    opts: RtspOptions,
    wakers: Arc<SpacedWakes>,
    counters: PathCounters,
    /// `automatic` saw UDP fail with this camera: TCP from now on.
    udp_failed: bool,
    /// Connections made: each is a new source to the track writers (see `push`).
    connections: u32,
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Rtsp(String),
    #[error("no answer within {0:?} (readTimeout): is the host up and is this its RTSP port?")]
    ConnectTimeout(Duration),
    #[error("no media for {0:?} (readTimeout): the camera stopped sending")]
    NoMedia(Duration),
    #[error("the camera closed the connection")]
    Closed,
    #[error("nothing relay can carry: {0}")]
    NothingToCarry(String),
}

/// A connection that ended without failing.
enum Ended {
    /// `sourceOnDemandCloseAfter` passed without viewers.
    Unwatched,
}

/// A camera stream the relay carries, and how.
struct Carried {
    stream: usize,
    info: TrackInfo,
    parameter_sets: Option<ParameterSets>,
    how: Carry,
}

pub(crate) enum Carry {
    /// The camera's payloads as they are, re-cut only where over udpMaxPayloadSize
    /// (with the sequence numbers the extra pieces take), and for other codecs as is.
    Passthrough { shift: u16 },
    /// AAC, which browsers do not play, transcoded once to Opus.
    Transcoded(Box<AacToOpus>, OpusSource),
}

impl Carry {
    /// Passes one of the camera's packets to `writer`: H264 and H265 payloads re-cut to
    /// `budget` bytes, AAC transcoded, the rest as it came.
    pub(crate) fn push(
        &mut self,
        writer: &mut TrackWriter,
        budget: usize,
        p: SourcePacket<'_>,
    ) -> Result<(), fragment::FragmentError> {
        match (self, NalFormat::of(writer.track().info.codec)) {
            (Carry::Passthrough { shift }, Some(format)) if p.payload.len() > budget => {
                // Cut into new payloads.
                let pieces = fragment::fit(format, p.payload, budget)?;
                let last = pieces.len() - 1;
                for (i, piece) in pieces.iter().enumerate() {
                    writer.push(SourcePacket {
                        seq: p.seq.wrapping_add(*shift).wrapping_add(i as u16),
                        marker: p.marker && i == last,
                        payload: piece,
                        ..p
                    });
                }
                *shift = shift.wrapping_add(last as u16);
            }
            (Carry::Passthrough { shift }, _) => {
                writer.push(SourcePacket {
                    seq: p.seq.wrapping_add(*shift),
                    ..p
                });
            }
            (Carry::Transcoded(aac, opus), _) => {
                aac.push(p.timestamp, p.marker, p.payload, &mut |frame| {
                    let mut packet = opus.packet(&frame, p.arrival);
                    packet.ssrc = p.ssrc;
                    writer.push(packet);
                });
            }
        }
        Ok(())
    }
}

impl RtspSource {
    async fn run(&mut self) {
        let mut backoff = Backoff::default();
        loop {
            if let Some(close_after) = self.opts.close_after {
                self.path.set_state(PathState::Idle);
                // A made path nobody asks for within that time was made by a request
                // that did not watch (a page, a refused offer).
                let demand = self.path.demand_changed();
                if !self.opts.ends_unwatched {
                    demand.await;
                } else if tokio::time::timeout(close_after, demand).await.is_err() {
                    return;
                }
            }
            let reason = match self.connect_and_receive(&mut backoff).await {
                Ok(Ended::Unwatched) if self.opts.ends_unwatched => return,
                Ok(Ended::Unwatched) => continue,
                Err(failure) => failure.to_string(),
            };
            let wait = backoff.failed(Instant::now());
            self.path.set_state(PathState::Failed {
                reason: reason.clone(),
                retry_in: wait,
            });
            tracing::debug!(path = %self.path.name, url = self.url.redacted(), "{reason}");
            let retry_at = tokio::time::Instant::now() + wait;
            // An on-demand source retries only for viewers who came or wait meanwhile.
            let mut wanted = self.path.readers() > 0;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(retry_at) => break,
                    () = self.path.demand_changed() => wanted = true,
                }
            }
            if self.opts.close_after.is_some() && !wanted && self.path.readers() == 0 {
                if self.opts.ends_unwatched {
                    return;
                }
                self.path.set_state(PathState::Idle);
                self.path.demand_changed().await;
            }
        }
    }

    /// One connection: DESCRIBE, SETUP, PLAY, then media until it ends.
    async fn connect_and_receive(&mut self, backoff: &mut Backoff) -> Result<Ended, Failure> {
        self.path.set_state(PathState::Connecting);
        let timeout = self.opts.read_timeout;
        let (session, carried, left_out) = tokio::time::timeout(timeout, self.open())
            .await
            .map_err(|_| Failure::ConnectTimeout(timeout))??;
        let infos: Vec<_> = carried.iter().map(|c| c.info.clone()).collect();
        let mut writers = self.path.take_writers(&infos);
        for (writer, c) in writers.iter().zip(&carried) {
            if let Some(sets) = &c.parameter_sets {
                writer.set_parameter_sets(sets.clone());
            }
        }
        self.connections = self.connections.wrapping_add(1);
        // Stream index -> writer.
        let mut routes = vec![None; carried.iter().map(|c| c.stream + 1).max().unwrap_or(0)];
        for (i, c) in carried.iter().enumerate() {
            routes[c.stream] = Some(i);
        }
        let tracks = writers.iter().map(|w| w.track().clone()).collect();
        self.path.set_state(PathState::Ready {
            tracks,
            left_out: left_out.into(),
        });
        backoff.connected(Instant::now());
        let mut carried = carried;
        let ended = self
            .receive(session, &mut writers, &mut carried, &routes)
            .await;
        self.path.return_writers(writers);
        ended
    }

    /// DESCRIBE, SETUP of every stream relay carries, PLAY. Also returns what is left
    /// out, in words.
    async fn open(&mut self) -> Result<(Session<Playing>, Vec<Carried>, Vec<String>), Failure> {
        let options = SessionOptions::default()
            .creds(self.url.credentials())
            .user_agent(format!("relay/{}", env!("CARGO_PKG_VERSION")));
        let mut session = Session::describe(self.url.url().clone(), options)
            .await
            .map_err(|e| Failure::Rtsp(retina_text(&e, self.url.credentials().is_some())))?;
        let sdp_text = String::from_utf8_lossy(session.sdp()).into_owned();
        let described = sdp::media_tracks(&sdp_text)
            .map_err(|e| Failure::Rtsp(format!("the camera's SDP: {e}")))?;
        let mut carried = Vec::new();
        let mut left_out = Vec::new();
        for (stream, (s, (fmtp, track))) in session.streams().iter().zip(described).enumerate() {
            match (track, transcoder(s, &fmtp)) {
                (Ok(track), _) => carried.push(Carried {
                    stream,
                    info: track.info,
                    parameter_sets: track.parameter_sets,
                    how: Carry::Passthrough { shift: 0 },
                }),
                (Err(_), Some(Ok(aac))) => {
                    let info = TrackInfo {
                        codec: Codec::Opus,
                        fmtp: match aac.channels() {
                            2 => "sprop-stereo=1".into(),
                            _ => String::new(),
                        },
                    };
                    carried.push(Carried {
                        stream,
                        info,
                        parameter_sets: None,
                        how: Carry::Transcoded(Box::new(aac), OpusSource::new(0)),
                    })
                }
                (Err(_), Some(Err(e))) => left_out.push(format!("{}: {e}", stream_name(s))),
                (Err(_), None) => left_out.push(cannot_carry(s)),
            }
        }
        if carried.is_empty() {
            return Err(Failure::NothingToCarry(left_out.join("; ")));
        }
        let tcp = match self.opts.transport {
            RtspTransport::Tcp => true,
            RtspTransport::Udp => false,
            RtspTransport::Automatic => self.udp_failed,
        };
        // Indices, not borrows of `carried`, across the awaits: a transcoder is not Sync.
        let streams: Vec<usize> = carried.iter().map(|c| c.stream).collect();
        for stream in streams {
            let transport = match tcp {
                true => Transport::Tcp(Default::default()),
                false => Transport::Udp(Default::default()),
            };
            let setup = session
                .setup(stream, SetupOptions::default().transport(transport))
                .await;
            match setup {
                Ok(()) => {}
                // automatic: a camera that refuses UDP is asked for TCP, on a new
                // connection (streams already set up over UDP cannot change).
                Err(e) if !tcp && self.opts.transport == RtspTransport::Automatic => {
                    tracing::info!(path = %self.path.name, "UDP refused ({}): trying TCP", first_line(&e.to_string()));
                    self.udp_failed = true;
                    return Box::pin(self.open()).await;
                }
                Err(e) => return Err(Failure::Rtsp(retina_text(&e, true))),
            }
        }
        let play = PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive);
        let session = session
            .play(play)
            .await
            .map_err(|e| Failure::Rtsp(retina_text(&e, true)))?;
        let transport = if tcp { "TCP" } else { "UDP" };
        tracing::info!(path = %self.path.name, url = self.url.redacted(), "playing over {transport}");
        Ok((session, carried, left_out))
    }

    /// Media into the tracks until the camera fails or, on demand, nobody watches.
    async fn receive(
        &mut self,
        mut session: Session<Playing>,
        writers: &mut [TrackWriter],
        carried: &mut [Carried],
        routes: &[Option<usize>],
    ) -> Result<Ended, Failure> {
        let read_timeout = self.opts.read_timeout;
        let mut media_deadline = tokio::time::Instant::now() + read_timeout;
        let mut got_media = false;
        let mut close = self.opts.close_after.map(CloseAfter::new);
        let mut close_at = None;
        loop {
            if let Some(c) = &mut close {
                close_at = c.readers(self.path.readers(), Instant::now());
            }
            tokio::select! {
                item = session.next() => {
                    let mut wake = 0;
                    let mut next = Some(item);
                    let mut taken = 0;
                    // Everything already received goes in before the workers are woken.
                    while let Some(item) = next.take() {
                        match item {
                            None => return Err(Failure::Closed),
                            Some(Err(e)) => return Err(Failure::Rtsp(retina_text(&e, true))),
                            Some(Ok(PacketItem::Rtp(packet))) => {
                                if let Some(writer) = routes.get(packet.stream_id()).copied().flatten() {
                                    wake |= self.push(&mut writers[writer], &mut carried[writer].how, packet);
                                    got_media = true;
                                    media_deadline = tokio::time::Instant::now() + read_timeout;
                                }
                            }
                            Some(Ok(_)) => {} // RTCP: retina reads the sender reports.
                        }
                        taken += 1;
                        if taken < BATCH {
                            next = session.next().now_or_never();
                        }
                    }
                    if wake != 0 {
                        self.wakers.wake(wake);
                    }
                }
                () = tokio::time::sleep_until(media_deadline) => {
                    if !got_media && self.opts.transport == RtspTransport::Automatic && !self.udp_failed {
                        // Firewalls drop UDP without a word: TCP next time.
                        self.udp_failed = true;
                    }
                    return Err(Failure::NoMedia(read_timeout));
                }
                () = self.path.demand_changed(), if close.is_some() => {}
                () = sleep_until_some(close_at) => {
                    if self.path.readers() == 0 {
                        tracing::info!(path = %self.path.name, "no viewers: closing the source (sourceOnDemandCloseAfter)");
                        return Ok(Ended::Unwatched);
                    }
                }
            }
        }
    }

    /// Passes one packet to its track; the workers to wake for it.
    fn push(
        &mut self,
        writer: &mut TrackWriter,
        how: &mut Carry,
        packet: retina::rtp::ReceivedPacket,
    ) -> u64 {
        let header = packet.header();
        // Each connection is a new source to the writer, which then re-bases numbering
        // even when the camera kept its SSRC across the reconnect (numbering shifted by
        // re-cutting, or an Opus count that starts again, would otherwise collide).
        let ssrc = header.ssrc().wrapping_add(self.connections);
        let (seq, timestamp, marker) =
            (header.sequence_number(), header.timestamp(), header.mark());
        let packet = SourcePacket {
            ssrc,
            seq,
            timestamp,
            marker,
            payload: packet.payload(),
            arrival: std::time::Instant::now(),
        };
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        if how
            .push(writer, self.opts.max_payload - PACKET_OVERHEAD, packet)
            .is_err()
        {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return 0;
        }
        writer.track().readers()
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The transcoder of an AAC stream (`mpeg4-generic`), or `None` for other codecs.
fn transcoder(
    s: &retina::client::Stream,
    fmtp: &str,
) -> Option<Result<AacToOpus, crate::audio::AudioError>> {
    (s.encoding_name() == "mpeg4-generic")
        .then(|| AacToOpus::from_sdp(s.encoding_name(), s.clock_rate_hz(), fmtp))
}

/// A stream as its SDP names it: `audio mpeg4-generic/48000/2`.
fn stream_name(s: &retina::client::Stream) -> String {
    let channels = s.channels().map(|c| format!("/{c}")).unwrap_or_default();
    format!(
        "{} {}/{}{channels}",
        s.media(),
        s.encoding_name(),
        s.clock_rate_hz()
    )
}

/// A stream relay leaves out, in words for the log and the path's state.
fn cannot_carry(s: &retina::client::Stream) -> String {
    let what = stream_name(s);
    match s.encoding_name() {
        "mp4a-latm" => {
            format!("{what}: AAC in LATM cannot be carried to WebRTC viewers (only mpeg4-generic is transcoded)")
        }
        _ => format!("{what}: not a codec WebRTC viewers take"),
    }
}

/// A retina error in words: what the camera answered and what to check. Retina's own
/// text adds connection and message context on further lines (for Wireshark), which
/// the debug log keeps.
fn retina_text(e: &retina::Error, has_credentials: bool) -> String {
    tracing::debug!("retina: {e}");
    match e.status_code() {
        Some(401) if has_credentials => "the camera refused the user and password \
            (401 Unauthorized): check them in source (rtsp://user:pass@host/...)"
            .into(),
        Some(401) => "the camera asks for a user and password (401 Unauthorized): \
            write them in source as rtsp://user:pass@host/..."
            .into(),
        Some(404) => "the camera has no stream at this URL (404 Not Found): check the \
            path in source"
            .into(),
        _ => {
            let text = e.to_string();
            let line = first_line(&text).trim_end_matches(" buffered:");
            if line.starts_with("Unable to connect") {
                format!("{line}: is the camera on, and is this its RTSP port?")
            } else if line.starts_with("RTSP framing error") {
                format!("the server does not answer in RTSP ({line})")
            } else if line.contains("EOF while expecting response") {
                format!("the server closed the connection before answering ({line})")
            } else {
                line.to_owned()
            }
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text).trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::{history::Retention, Track};

    /// An H264 track, its writer, and a camera's packets carried as they came.
    fn passthrough_h264() -> (Arc<Track>, TrackWriter, Carry) {
        let info = TrackInfo {
            codec: Codec::H264,
            fmtp: "packetization-mode=1".into(),
        };
        let (track, writer) = Track::new(info, Retention::default());
        (track, writer, Carry::Passthrough { shift: 0 })
    }

    /// A payload over the budget is cut into fragments numbered one after the other,
    /// and every packet after it is numbered on from them; one that fits goes as it came.
    #[test]
    fn a_payload_over_the_budget_is_cut_and_the_ones_after_renumbered() {
        let (track, mut writer, mut carry) = passthrough_h264();
        let mut idr = vec![0x65, 0x88];
        idr.extend(std::iter::repeat_n(7u8, 2_500));
        let arrival = Instant::now();
        let packet = |seq, marker, payload| SourcePacket {
            ssrc: 1,
            seq,
            timestamp: 3000,
            marker,
            payload,
            arrival,
        };
        carry
            .push(&mut writer, 1_000, packet(10, true, &idr))
            .unwrap();
        carry
            .push(&mut writer, 1_000, packet(11, true, &[0x41, 0x9a, 1]))
            .unwrap();
        let got: Vec<_> = track.range(0, track.head()).collect();
        let seqs: Vec<u16> = got.iter().map(|p| p.seq as u16).collect();
        assert_eq!(seqs, [10, 11, 12, 13]);
        assert!(got[..3]
            .iter()
            .all(|p| p.payload.len() <= 1_000 && p.payload[0] & 0x1f == 28));
        assert_eq!(
            got.iter().filter(|p| p.marker).count(),
            2,
            "the IDR's last piece, then the slice"
        );
        assert!(got[2].marker);
        assert_eq!(&got[3].payload[..], &[0x41, 0x9a, 1]);
        let body: Vec<u8> = got[..3]
            .iter()
            .flat_map(|p| p.payload[2..].to_vec())
            .collect();
        assert_eq!(
            body,
            idr[1..],
            "the fragments carry the NAL unit's body whole"
        );
    }

    /// An empty payload from a camera (a broken one, or padding only) is held as an
    /// empty packet, whatever the budget: nothing reads a byte of it.
    #[test]
    fn an_empty_payload_goes_through_as_it_came() {
        let (track, mut writer, mut carry) = passthrough_h264();
        for budget in [0, 1, 1_000] {
            let packet = SourcePacket {
                ssrc: 1,
                seq: budget as u16,
                timestamp: 3000,
                marker: true,
                payload: &[],
                arrival: Instant::now(),
            };
            carry.push(&mut writer, budget, packet).unwrap();
        }
        assert_eq!(track.head(), 3);
        assert!(track.range(0, 3).all(|p| p.payload.is_empty()));
    }
}
