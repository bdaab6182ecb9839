"""A live RTSP server for relay's tests: GStreamer's, with test-pattern cameras.

Run with /usr/bin/python3 (the one with gi). Prints "ready <port>" once it listens.
Mounts:
  /h264aac  H264 (constrained baseline, 320x240, 30 fps, a keyframe a second) and AAC
  /h264     the same video alone
  /h265     H265 video alone
  /h264tcp  H264 video, over TCP only (SETUP over UDP is refused, as some cameras do)
With --auth basic|digest, every mount asks for user "user", password "secret".

With --cameras N (the load tools' RTSP cameras), the mounts are /cam0 .. /cam{N-1}
instead, mount i fed by RTP/H264 (payload type 96) on 127.0.0.1, port RTP_PORT + i *
PORT_STEP (what `relay-bench publish` sends), encoding nothing. --pipeline passthrough
(the default): the mount's payloader is the udpsrc itself, so the RTP goes out as it came
(sequence numbers, timestamps, packetization, the latency stamps); repay: depacketized and
packetized again (rtph264depay ! h264parse ! rtph264pay), as a re-streaming server does.
Such a mount answers DESCRIBE once its RTP flows.
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

VIDEO = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! "
)
H264 = (
    VIDEO + "x264enc tune=zerolatency speed-preset=ultrafast bitrate=300 key-int-max=30 ! "
    "video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=-1 "
)
H265 = (
    VIDEO + "x265enc tune=zerolatency speed-preset=ultrafast bitrate=300 key-int-max=30 ! "
    "rtph265pay name=pay0 pt=96 config-interval=-1 "
)
AAC = (
    "audiotestsrc is-live=true ! audioconvert ! audioresample ! "
    "audio/x-raw,rate=48000,channels=2 ! avenc_aac ! rtpmp4gpay name=pay1 pt=97 "
)
MOUNTS = {"/h264aac": H264 + AAC, "/h264": H264, "/h265": H265, "/h264tcp": H264}
TCP_ONLY = {"/h264tcp"}
# A camera's RTP as `relay-bench publish` sends it. The fields past payload become the
# SDP's fmtp (the publisher's clip repeats SPS and PPS before every keyframe).
RTP_CAPS = (
    "application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96,"
    "packetization-mode=(string)1,profile-level-id=(string)42e01f"
)


def camera(port, pipeline):
    source = 'udpsrc address=127.0.0.1 port=%d caps="%s"' % (port, RTP_CAPS)
    if pipeline == "passthrough":
        return source + " name=pay0 "
    return (
        source + " ! rtph264depay ! h264parse config-interval=-1 ! "
        "rtph264pay name=pay0 pt=96 config-interval=-1 "
    )


def main():
    args = argparse.ArgumentParser()
    args.add_argument("--port", type=int, required=True)
    args.add_argument("--auth", choices=["none", "basic", "digest"], default="none")
    args.add_argument("--cameras", type=int, default=0)
    args.add_argument("--rtp-port", type=int, default=30000)
    args.add_argument("--port-step", type=int, default=2)
    args.add_argument("--pipeline", choices=["passthrough", "repay"], default="passthrough")
    args = args.parse_args()
    mounts_launch = MOUNTS
    if args.cameras > 0:
        mounts_launch = {
            "/cam%d" % i: camera(args.rtp_port + i * args.port_step, args.pipeline)
            for i in range(args.cameras)
        }
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    if args.auth != "none":
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        if args.auth == "basic":
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic("user", "secret"), token)
        else:
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest("user", "secret", token)
        server.set_auth(auth)
    mounts = server.get_mount_points()
    for path, launch in mounts_launch.items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch("( " + launch + ")")
        # One pipeline per mount for every client, as a camera has.
        factory.set_shared(True)
        if path in TCP_ONLY:
            factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
        if args.auth != "none":
            role = Gst.Structure.from_string(
                "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )[0]
            factory.add_role_from_structure(role)
        mounts.add_factory(path, factory)
    if server.attach(None) == 0:
        print("cannot listen on port %d" % args.port, file=sys.stderr)
        sys.exit(1)
    print("ready %d" % args.port, flush=True)
    GLib.MainLoop().run()


main()
