"""Makes the test captures: ffmpeg encodes a 1 kHz sine as AAC-LC and sends it with its
RFC 3640 (mpeg4-generic, AAC-hbr) RTP packetizer; each datagram is recorded as a
[u16 big-endian length][RTP packet] record, and ffmpeg's SDP beside it.

    python3 capture.py sine1k_44100_mono 44100 1 1400    # several AUs per packet
    python3 capture.py sine1k_48000_stereo 48000 2 200   # every AU fragmented
    python3 capture.py sine1k_16000_mono 16000 1 1400    # a rate Opus encodes natively
"""
import socket
import subprocess
import sys

out, rate, channels, packet_size = sys.argv[1:5]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                "-i", f"sine=f=1000:r={rate}:d=0.5", "-ac", channels, "-c:a", "aac",
                "-b:a", "96k", "-f", "rtp", "-pkt_size", packet_size,
                "-sdp_file", out + ".sdp", f"rtp://127.0.0.1:{port}"], check=True)
s.settimeout(0.5)
with open(out + ".rtp", "wb") as f:
    try:
        while True:
            d = s.recv(65536)
            f.write(len(d).to_bytes(2, "big") + d)
    except socket.timeout:
        pass
