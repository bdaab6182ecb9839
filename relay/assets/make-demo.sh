#!/bin/sh
# Makes demo.h264, the built-in demo clip (embedded in the relay binary):
# 6 s of testsrc2, 640x360 at 30 fps, H264 constrained baseline (42c01e), no B-frames,
# an IDR every 30 frames with SPS+PPS before it, one slice per frame, ~600 kbit/s,
# raw Annex B. The relay packetizes it itself, so the file must stay raw H264.
set -eu
cd "$(dirname "$0")"
# -threads 1: no sliced threads (one slice per frame) and a reproducible stream.
# repeat-headers=1: SPS+PPS before every IDR, so any loop point is a clean start.
# scenecut=0 + keyint=min-keyint=30: IDRs exactly every second, nothing between.
# filter_units removes x264's SEI (its settings as text): nothing a viewer needs.
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=640x360:rate=30" -frames:v 180 \
  -c:v libx264 -threads 1 -preset medium -profile:v baseline -level:v 3.0 -pix_fmt yuv420p \
  -b:v 600k -maxrate 600k -bufsize 600k \
  -x264-params "keyint=30:min-keyint=30:scenecut=0:bframes=0:repeat-headers=1:slices=1" \
  -bsf:v filter_units=remove_types=6 \
  -f h264 demo.h264
