//! Sources of tracks: the built-in demo clip and RTP pushed over UDP (being written).
