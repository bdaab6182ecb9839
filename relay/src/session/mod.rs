//! One viewer: str0m for ICE-lite, DTLS and SDP; our SRTP for media and RTCP (being written).
