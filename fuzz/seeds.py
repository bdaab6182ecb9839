"""Writes the seed inputs of the fuzz targets (see docs/architecture.md, "Fuzzing") into
fuzz/corpus/TARGET/seed_*, from real data where the repository has it: the demo clip's
RTP, ffmpeg's AAC captures and SDPs, the browsers' offers kept in str0m's sources,
relay.yml and MediaMTX's mediamtx.yml, the API tests' bodies. A fuzz run grows them, and
`cargo fuzz cmin` keeps what adds coverage:

    python3 fuzz/seeds.py ~/.cargo/registry/src/*/str0m-0.25.0 MEDIAMTX_YML
"""
import json
import os
import re
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
STR0M, MEDIAMTX_YML = sys.argv[1:3]


def write(target, name, data):
    d = os.path.join(ROOT, "fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed_" + name), "wb") as f:
        f.write(data)


def rec(op, payload):
    assert len(payload) < 256
    return bytes([op, len(payload)]) + payload


def wide(op, payload):
    return bytes([op]) + struct.pack(">H", len(payload)) + payload


def read(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


# --- the demo clip as the demo ingest packetizes it (single NAL units and FU-A) ---
def nal_units(stream):
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", stream)]
    for i, s in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(stream)
        yield stream[s:end].rstrip(b"\x00")


def rtp(pt, seq, ts, ssrc, payload, marker=False):
    return struct.pack(">BBHII", 0x80, pt | (0x80 if marker else 0), seq & 0xFFFF, ts, ssrc) + payload


def demo_packets(count, max_payload=1200, pt=96):
    out, seq, ts = [], 1000, 90000
    for nal in nal_units(read("relay/assets/demo.h264")):
        vcl = nal[0] & 0x1F in (1, 5)
        if len(nal) <= max_payload:
            pieces = [nal]
        else:
            data, pieces = nal[1:], []
            for i in range(0, len(data), max_payload - 2):
                s = 0x80 if i == 0 else 0
                e = 0x40 if i + max_payload - 2 >= len(data) else 0
                pieces.append(bytes([(nal[0] & 0xE0) | 28, s | e | (nal[0] & 0x1F)]) + data[i:i + max_payload - 2])
        for i, p in enumerate(pieces):
            out.append(rtp(pt, seq, ts, 0x1234, p, vcl and i == len(pieces) - 1))
            seq += 1
            if len(out) == count:
                return out
        if vcl:
            ts += 3000
    return out


def captures(name):
    data, out = read("relay/src/audio/testdata/" + name + ".rtp"), []
    while data:
        (n,) = struct.unpack(">H", data[:2])
        out.append(data[2:2 + n])
        data = data[2 + n:]
    return out


demo = demo_packets(40)
write("rtp_ingest", "demo_h264", b"".join(wide(33 if p[1] & 0x80 else 0, p) for p in demo[:24]))
write("rtp_ingest", "aac_capture_as_pt97", b"".join(wide(21, p) for p in captures("sine1k_44100_mono")[:8]))
odd = [
    rtp(111, 1, 960, 7, b"\xfc\xff\xfe"),  # Opus
    rtp(0, 1, 160, 8, b"\xff" * 160),  # PCMU
    rtp(98, 1, 3000, 9, b"\x10\x02\x00\x9d\x01\x2a"),  # a VP8 keyframe's start
    rtp(100, 1, 0, 10, b"unknown payload type"),
    bytes([0xB2, 96, 0, 5, 0, 0, 0, 1, 0, 0, 0, 2]) + bytes(8) + b"\xbe\xde\x00\x01\x10\xff\x00\x00" + b"\x65media\x00\x00\x03",
    bytes([0x80, 200, 0, 6]) + bytes(24),  # an SR on the RTP port
    rtp(111, 1, 960, 7, b"\xfc\xff\xfe"),  # a duplicate
    b"\x80",
]
write("rtp_ingest", "every_kind", b"".join(wide(1, p) for p in odd))

# --- viewers' RTCP (RFC 3550, 4585, 5104), as browsers send it ---
def rtcp(count, pt, body):
    return struct.pack(">BBH", 0x80 | count, pt, len(body) // 4) + body


block = struct.pack(">IIIIII", 0x1234, 0x0A000010, 70000, 12, 0x12345678, 0x10000)
sdes = rtcp(1, 202, struct.pack(">I", 0xAB) + b"\x01\x10" + b"TbS1Ajv9obq6/63I" + b"\x00\x00")
write("rtcp_compound", "rr_sdes", rtcp(1, 201, struct.pack(">I", 0xAB) + block) + sdes)
write("rtcp_compound", "sr_block", rtcp(1, 200, struct.pack(">IQIII", 0xAB, 1 << 40, 3000, 10, 1000) + block))
write("rtcp_compound", "nack", rtcp(1, 201, struct.pack(">I", 0xAB)) + rtcp(1, 205, struct.pack(">IIHHHH", 0xAB, 0x1234, 100, 0x8001, 300, 0)))
write("rtcp_compound", "pli_fir", rtcp(1, 206, struct.pack(">II", 0xAB, 0x1234)) + rtcp(4, 206, struct.pack(">IIII", 0xAB, 0, 0x1234, 0x01000000)))
write("rtcp_compound", "remb_twcc", rtcp(15, 206, struct.pack(">II", 0xAB, 0) + b"REMB\x01\x0a\x00\x00\x00\x00\x12\x34") + rtcp(15, 205, struct.pack(">IIHHI", 0xAB, 0x1234, 5, 2, 0x00000100) + b"\x20\x02\x00\x00"))
write("rtcp_compound", "truncated", rtcp(1, 201, struct.pack(">I", 0xAB) + block)[:30])

# --- SRTP: each profile, a key, then sealed, tampered, replayed, reordered, raw ---
for profile, material in [(0, 56), (1, 88), (2, 60)]:
    key = bytes(range(material // 2))
    records = [
        wide(1, b"\x00\x10" + b"\x65" * 100),  # index 1
        wide(1, b"\x00\x10" + b"\x41" * 50),  # the next
        wide(2, b"\x00\x10" + b"\x41" * 50),  # tampered, then intact
        wide(3, b""),  # the last again
        wide(1, b"\xff\xd0" + b"\x41" * 20),  # three back
        wide(1 | 8, b"\x80\x00" + b"\x41" * 20),  # another SSRC
        wide(5, b"\x00\x00\x00\x01" + bytes(24)),  # SRTCP
        wide(6, b"\x00\x00"),  # SRTCP tampered
        wide(0, bytes([0x80, 96, 0, 1]) + bytes(40)),  # raw
        wide(4, bytes([0x80, 201, 0, 1]) + bytes(40)),  # raw SRTCP
    ]
    write("srtp_open", "profile%d" % profile, bytes([profile]) + key + b"".join(records))

# --- a track's history: keyframes, reordering, loss, a restart, a new source ---
def pkt(op, seq_delta, ts_step, payload):
    return rec(op, struct.pack(">hB", seq_delta, ts_step) + payload)


h264 = [pkt(4, 1, 0, b"\x67\x42\xe0\x1f"), pkt(4, 1, 0, b"\x68\xce"), pkt(36, 1, 0, b"\x65" + bytes(40))]
h264 += [pkt(36, 1, 10, b"\x41" + bytes(30)) for _ in range(6)]
h264 += [pkt(36, 2, 10, b"\x41" + bytes(30)), pkt(36, -1, 0, b"\x41" + bytes(30)), pkt(36, 0, 0, b"\x41" + bytes(30))]
h264 += [pkt(4, 5000, 10, b"\x65" + bytes(20)), pkt(5, 1, 10, b"\x41"), pkt(0xF8 | 4, 1, 10, b"\x41" + bytes(200))]
write("track_history", "h264_cached", bytes([0x80 | 0x20]) + b"".join(h264))
write("track_history", "h264_small", bytes([0x08]) + b"".join(h264))
h265 = [pkt(4, 1, 0, b"\x40\x01\x0c"), pkt(4, 1, 0, b"\x42\x01\x01"), pkt(4, 1, 0, b"\x44\x01\xc1"), pkt(36, 1, 0, b"\x26\x01" + bytes(40))]
h265 += [pkt(36, 1, 10, b"\x62\x01\x93" + bytes(30)), pkt(36, 1, 10, b"\x02\x01" + bytes(30)), pkt(36, 1, 10, b"\x60\x01\x00\x03\x40\x01\x0c\x00\x03\x42\x01\x01")]
write("track_history", "h265", bytes([0x81]) + b"".join(h265))
write("track_history", "vp8_opus", bytes([0x82]) + b"".join([pkt(36, 1, 10, b"\x10\x02\x00\x9d\x01\x2a"), pkt(36, 1, 10, b"\x00\x01")]) + b"".join(pkt(16, 1, 3, b"\xfc\xff") for _ in range(5)))

# --- offers: the browsers' offers str0m's parser is tested with, as WHEP and WHIP ---
parser = open(os.path.join(STR0M, "src/sdp/parser.rs")).read()
for i, block in enumerate(re.findall(r"// v=0\n(?:// .*\n)+", parser)):
    lines = [l[3:] for l in block.splitlines()]
    text = "\r\n".join(lines).replace("\\\r\n", "") + "\r\n"
    text = text.replace("\\n", "\r\n")
    # A viewer's offer receives; a publisher's sends.
    for pick, role, direction in [(0b111110, "whep", "a=recvonly"), (0b000001, "whip", "a=sendonly")]:
        offer = text.replace("a=sendonly", direction)
        write("whep_whip_offer", "browser%d_%s" % (i, role), bytes([pick]) + offer.encode())
# And the clients' offers of relay's own offer tests (Chromium, Firefox, GStreamer, ffmpeg).
tests = read("relay/src/session/offer.rs").decode()
for name, text in re.findall(r'const ([A-Z]+): &str = "(v=0\n.*?)";', tests, re.S):
    write("whep_whip_offer", name.lower() + "_whep", bytes([0b111110]) + text.replace("\n", "\r\n").encode())
write("whep_whip_offer", "not_sdp", b"\x02v=0\r\n")

# --- cameras: ffmpeg's SDPs and packets, a GStreamer-style H264 + AAC description ---
FFMPEG_H264 = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "a=tool:libavformat LIBAVFORMAT_VERSION\r\nm=video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkAoC/5cBEAAAMAAQAAAwA8DxYuSA==,aMuDyyA=; profile-level-id=42C01E\r\n"
)
FFMPEG_H265 = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "a=tool:libavformat LIBAVFORMAT_VERSION\r\nm=video 5999 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\n"
    "a=fmtp:96 sprop-vps=QAEMAf//BAgAAAMAnggAAAMAADyVmAk=; sprop-sps=QgEBBAgAAAMAnggAAAMAADyQAUEB4ssrNJJleAtwICAAQAAAAwBAAAADAoI=; sprop-pps=RAHBcoYMRiQ=\r\n"
)
GST = (
    "v=0\r\no=- 1188340656180883 1 IN IP4 127.0.0.1\r\ns=Session streamed with GStreamer\r\n"
    "i=rtsp-server\r\nt=0 0\r\na=tool:GStreamer\r\na=type:broadcast\r\na=control:*\r\na=range:npt=now-\r\n"
    "m=video 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1;profile-level-id=42e01f;sprop-parameter-sets=Z0LAHtkAoC/5cBEAAAMAAQAAAwA8DxYuSA==,aMuDyyA=\r\n"
    "a=control:stream=0\r\na=ts-refclk:local\r\na=mediaclk:sender\r\n"
    "m=audio 0 RTP/AVP 97\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n"
    "a=fmtp:97 streamtype=5;profile-level-id=2;mode=AAC-hbr;config=1190;sizelength=13;indexlength=3;indexdeltalength=3\r\n"
    "a=control:stream=1\r\n"
)
write("rtsp_camera", "ffmpeg_h264_demo", FFMPEG_H264.encode() + b"\x00" + b"".join(wide(0xC0, p) for p in demo[:16]) + b"".join(wide(0x40, p) for p in demo[16:20]))
write("rtsp_camera", "ffmpeg_h264_recut", FFMPEG_H264.encode() + b"\x00" + b"".join(wide(0x00, p) for p in demo_packets(40, 3000)[:6]))
h265_packets = [rtp(96, i, 0, 5, p) for i, p in enumerate([b"\x40\x01\x0c\x01", b"\x26\x01" + bytes(500), b"\x62\x01\x93" + bytes(400), b"\x60\x01\x00\x03\x40\x01\x0c\x00\x03\x42\x01\x01"])]
write("rtsp_camera", "ffmpeg_h265", FFMPEG_H265.encode() + b"\x00" + b"".join(wide(0x40, p) for p in h265_packets))
for name in ["sine1k_44100_mono", "sine1k_48000_stereo", "sine1k_16000_mono"]:
    sdp = read("relay/src/audio/testdata/%s.sdp" % name)
    write("rtsp_camera", "ffmpeg_" + name, sdp + b"\x00" + b"".join(wide(0xC0, p) for p in captures(name)[:12]))
write("rtsp_camera", "gstreamer_h264_aac", GST.encode() + b"\x00" + b"".join(wide(0xC0, p) for p in demo[:4]) + b"".join(wide(0xC1, p) for p in captures("sine1k_48000_stereo")[:6]))

# --- config files: relay's and MediaMTX's ---
write("config_yaml", "relay.yml", read("relay.yml"))
write("config_yaml", "mediamtx.yml", open(MEDIAMTX_YML, "rb").read())
write("config_yaml", "paths", "paths:\n  cam:\n    source: rtsp://10.0.0.5:554/stream1\n    rtspTransport: tcp\n  live:\n    source: publisher\n  demo:\n    source: demo\n  '~^pushed/(.+)$':\n    source: publisher\n")

# --- the API's config changes, as its tests make them ---
bodies = [
    (0, {"logLevel": "debug", "readTimeout": "5s"}),
    (1, {"maxReaders": 3, "sourceOnDemand": False}),
    (2, {"source": "publisher", "maxReaders": 2}),
    (3, {"source": "rtsp://10.0.0.5:554/stream1", "rtspTransport": "tcp"}),
    (4, {"source": "demo"}),
    (0, {"authInternalUsers": [{"user": "any", "pass": "secret", "ips": [], "permissions": [{"action": "read", "path": ""}]}]}),
    (5, {}),
]
write("api_bodies", "routes", b"".join(rec(op, json.dumps(b, separators=(",", ":")).encode()) for op, b in bodies))
write("api_bodies", "patterns", b"".join(rec(op | 8, json.dumps(b, separators=(",", ":")).encode()) for op, b in bodies[2:5]))
