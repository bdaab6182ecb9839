//! SRTP and SRTCP (RFC 3711, RFC 7714 AEAD AES-GCM) with ring (being written).
