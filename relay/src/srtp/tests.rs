//! Known-answer tests (RFC 7714 sections 16 and 17, and pion/srtp's vectors for the
//! whole key derivation and packet pipeline), round trips, tampering, replay, ROC
//! estimation, truncation and fuzzing of the public API.

use proptest::prelude::*;

use super::keys::SessionKeys;
use super::transform::Transform;
use super::{split_keying_material, Inbound, MasterKey, Outbound, Profile, SrtpError};

const PROFILES: [Profile; 3] = [
    Profile::AeadAes128Gcm,
    Profile::AeadAes256Gcm,
    Profile::Aes128CmHmacSha1_80,
];

pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

// RFC 7714 section 16 and 17 vectors: session keys are given directly.

const KEY_128: &str = "000102030405060708090a0b0c0d0e0f";
const KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const SALT: &str = "517569642070726f2071756f"; // "Quid pro quo"

/// SSRC 5501a0b2, SEQ f17b, ROC 0, payload "Gallia est omnis divisa in partes tres".
const RTP_PLAIN: &str = "8040f17b8041f8d35501a0b2
    47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573";
/// RFC 7714 16.1.1 and 16.1.2.
const SRTP_128: &str = "8040f17b8041f8d35501a0b2
    f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833
    899d7f27beb16a9152cf765ee4390cce";
/// RFC 7714 16.2.1 and 16.2.2.
const SRTP_256: &str = "8040f17b8041f8d35501a0b2
    32b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3b50b2a0276ffae0f1ba63799b87b
    7aa3db36dfffd6b0f9bb7878d7a76c13";

/// The sender report of RFC 7714 17.1 to 17.4 (SSRC "Mars"), SRTCP index 0x5d4.
const RTCP_PLAIN: &str = "81c8000d4d617273
    4e5450314e545032525450200000042a0000e9304c756e61
    deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";
const SRTCP_INDEX: u32 = 0x5d4;
/// RFC 7714 17.1: header | ciphertext | tag | E=1|index.
const SRTCP_128: &str = "81c8000d4d617273
    63e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275b
    c84aa45896cf4d2fc5abf87245d9eade 800005d4";
/// RFC 7714 17.2.
const SRTCP_256: &str = "81c8000d4d617273
    d50ae4d1f5ce5d304ba297e47d470c282c3ece5dbffe0a50a2eaa5c1110555be8415f658c61de0476f1b6fad
    1d1eb30c4446839f57ff6f6cb26ac3be 800005d4";
/// RFC 7714 17.3: authenticated only, E=0.
const SRTCP_128_TAG_ONLY: &str = "81c8000d4d617273
    4e5450314e545032525450200000042a0000e9304c756e61
    deadbeefdeadbeefdeadbeefdeadbeefdeadbeef
    841dd9683dd78ec92ae58790125f62b3 000005d4";
/// RFC 7714 17.4.
const SRTCP_256_TAG_ONLY: &str = "81c8000d4d617273
    4e5450314e545032525450200000042a0000e9304c756e61
    deadbeefdeadbeefdeadbeefdeadbeefdeadbeef
    91db4afbfeee5a978fab4393ed2615fe 000005d4";

fn rfc7714_keys(profile: Profile) -> SessionKeys {
    let key = match profile {
        Profile::AeadAes128Gcm => KEY_128,
        _ => KEY_256,
    };
    SessionKeys::from_parts(profile, &hex(key), &hex(SALT), &[])
}

fn rfc7714_inbound(profile: Profile) -> Inbound {
    Inbound::with_session_keys(&rfc7714_keys(profile), &rfc7714_keys(profile))
}

/// `plain` copied into a buffer with room for any profile's trailer.
fn buffer(plain: &[u8]) -> Vec<u8> {
    let mut buffer = plain.to_vec();
    buffer.resize(plain.len() + 32, 0xee);
    buffer
}

#[test]
fn rfc7714_16_srtp_encrypt() {
    for (profile, expected) in [
        (Profile::AeadAes128Gcm, SRTP_128),
        (Profile::AeadAes256Gcm, SRTP_256),
    ] {
        let plain = hex(RTP_PLAIN);
        let mut packet = buffer(&plain);
        let len = Transform::new(&rfc7714_keys(profile)).seal_rtp(&mut packet, 12, plain.len(), 0);
        assert_eq!(packet[..len], hex(expected)[..], "{profile:?}");
    }
}

#[test]
fn rfc7714_16_srtp_decrypt() {
    for (profile, protected) in [
        (Profile::AeadAes128Gcm, SRTP_128),
        (Profile::AeadAes256Gcm, SRTP_256),
    ] {
        let mut packet = hex(protected);
        let len = rfc7714_inbound(profile).unprotect_rtp(&mut packet).unwrap();
        assert_eq!(packet[..len], hex(RTP_PLAIN)[..], "{profile:?}");
    }
}

#[test]
fn rfc7714_17_srtcp_encrypt() {
    for (profile, expected) in [
        (Profile::AeadAes128Gcm, SRTCP_128),
        (Profile::AeadAes256Gcm, SRTCP_256),
    ] {
        let plain = hex(RTCP_PLAIN);
        let mut packet = buffer(&plain);
        let len =
            Transform::new(&rfc7714_keys(profile)).seal_rtcp(&mut packet, plain.len(), SRTCP_INDEX);
        assert_eq!(packet[..len], hex(expected)[..], "{profile:?}");
    }
}

#[test]
fn rfc7714_17_srtcp_decrypt_encrypted_and_tag_only() {
    for (profile, protected) in [
        (Profile::AeadAes128Gcm, SRTCP_128),
        (Profile::AeadAes256Gcm, SRTCP_256),
        (Profile::AeadAes128Gcm, SRTCP_128_TAG_ONLY),
        (Profile::AeadAes256Gcm, SRTCP_256_TAG_ONLY),
    ] {
        let mut packet = hex(protected);
        let len = rfc7714_inbound(profile)
            .unprotect_rtcp(&mut packet)
            .unwrap();
        assert_eq!(packet[..len], hex(RTCP_PLAIN)[..], "{profile:?}");

        // The tag-only vectors authenticate the E flag: claiming encryption fails.
        let mut flipped = hex(protected);
        let e = flipped.len() - 4;
        flipped[e] ^= 0x80;
        assert_eq!(
            rfc7714_inbound(profile).unprotect_rtcp(&mut flipped),
            Err(SrtpError::AuthenticationFailed)
        );
    }
}

// pion/srtp's known answers (srtp_test.go, rtpTestCases): master key and salt through the
// RFC 3711 key derivation, then whole packets. The GCM case takes the first 12 bytes of
// the salt, so it pins how the AEAD profiles feed a 12-byte salt to the PRF.

const PION_MASTER_KEY: &str = "0dcd213e4cbcf28f017f6994401e2889";
const PION_MASTER_SALT: &str = "62776038c06dc9419f6dd9433e7c";
const PION_PAYLOAD: &str = "000102030405";
const PION_CASES: [(u16, &str, &str); 6] = [
    (
        5000,
        "6dd37ed599b72d28b1f3a1f00cfbfd08",
        "053962bb502a0819c7ccc924b8d97ae5ad9906c73b00",
    ),
    (
        5001,
        "da470b2a745365bd2febdc4b6d23f3de",
        "b0bcfcb0152ca015b5a8cd0d65fa98b309b1f84b1cfa",
    ),
    (
        5002,
        "6ea7698d246ddcbfec021cd16076c10e",
        "5e206abf587e24c015947ae24925d4d408e2f1477a33",
    ),
    (
        5003,
        "247e96c87d33a2928d138de0769f08dc",
        "b06314e7d229ca928c9725d250696e1b04b937a5a1c5",
    ),
    (
        5004,
        "754328e43a77599b2edf7b12680b5749",
        "b24f1953798a9b9ee5229314508a8cd5fc61bf95d1fb",
    ),
    (
        65535,
        "aff7c2703720839c2c6385150e44ca36",
        "40446cd1335fca9b2ea3e503d78236d8b7e8973ce6b6",
    ),
];

fn pion_master(profile: Profile) -> MasterKey {
    let salt = hex(PION_MASTER_SALT);
    MasterKey::new(profile, &hex(PION_MASTER_KEY), &salt[..profile.salt_len()]).unwrap()
}

/// pion's packet: an all-zero 12-byte header but for the sequence number.
fn pion_header(seq: u16) -> Vec<u8> {
    let mut header = vec![0; 12];
    header[2..4].copy_from_slice(&seq.to_be_bytes());
    header
}

#[test]
fn pion_known_answers_through_key_derivation() {
    for (seq, cm, gcm) in PION_CASES {
        for (profile, protected_payload) in [
            (Profile::Aes128CmHmacSha1_80, cm),
            (Profile::AeadAes128Gcm, gcm),
        ] {
            let plain = [pion_header(seq), hex(PION_PAYLOAD)].concat();
            let protected = [pion_header(seq), hex(protected_payload)].concat();

            let mut packet = buffer(&plain);
            let outbound = Outbound::new(&pion_master(profile));
            let len = outbound.protect_rtp(&mut packet, 12, plain.len(), 0);
            assert_eq!(packet[..len], protected[..], "{profile:?} seq {seq}");

            let mut packet = protected.clone();
            let len = Inbound::new(&pion_master(profile))
                .unprotect_rtp(&mut packet)
                .unwrap();
            assert_eq!(packet[..len], plain[..], "{profile:?} seq {seq}");
        }
    }
}

// Round trips and attacks on the public API, for every profile.

/// Our keys and the peer's, as both ends of one DTLS-SRTP session derive them.
fn session(profile: Profile) -> (Outbound, Inbound) {
    let material: Vec<u8> = (0..profile.keying_material_len())
        .map(|i| (i * 37 + 11) as u8)
        .collect();
    let (ours, _) = split_keying_material(profile, &material, true).unwrap();
    // The peer, the DTLS server, opens our packets with its remote key.
    let (_, ours_seen_by_peer) = split_keying_material(profile, &material, false).unwrap();
    (Outbound::new(&ours), Inbound::new(&ours_seen_by_peer))
}

/// An RTP packet with 2 CSRCs and a one-byte header extension (RFC 8285) of 2 words.
fn rtp_packet(seq: u16, ssrc: u32, payload_len: usize) -> (Vec<u8>, usize) {
    let mut packet = vec![0x92, 96];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(&[1, 1, 1, 1, 2, 2, 2, 2]); // CSRCs
    packet.extend_from_slice(&[0xbe, 0xde, 0, 2, 0x10, 0xaa, 0x21, 0xbb, 0xcc, 0, 0, 0]);
    let header_len = packet.len();
    packet.extend((0..payload_len).map(|i| (i as u8).wrapping_mul(7) ^ seq as u8));
    (packet, header_len)
}

fn protect(outbound: &Outbound, plain: &[u8], header_len: usize, roc: u32) -> Vec<u8> {
    let mut packet = buffer(plain);
    let len = outbound.protect_rtp(&mut packet, header_len, plain.len(), roc);
    assert_eq!(len, plain.len() + outbound.profile().rtp_overhead());
    packet.truncate(len);
    packet
}

/// A sender report and a receiver report, compound.
fn rtcp_packet(ssrc: u32) -> Vec<u8> {
    let mut packet = vec![0x80, 200, 0, 6];
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend((0..20).map(|i| i as u8));
    packet.extend_from_slice(&[0x80, 201, 0, 1]);
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet
}

fn protect_rtcp(outbound: &mut Outbound, plain: &[u8]) -> Vec<u8> {
    let mut packet = buffer(plain);
    let len = outbound.protect_rtcp(&mut packet, plain.len()).unwrap();
    assert_eq!(len, plain.len() + outbound.profile().rtcp_overhead());
    packet.truncate(len);
    packet
}

#[test]
fn rtp_round_trip_every_profile() {
    for profile in PROFILES {
        let (outbound, mut inbound) = session(profile);
        for (seq, payload_len) in [(1u16, 0), (2, 1), (3, 1200), (4, 15), (5, 16), (6, 17)] {
            let (plain, header_len) = rtp_packet(seq, 0xcafe_f00d, payload_len);
            let mut packet = protect(&outbound, &plain, header_len, 0);
            if payload_len > 0 {
                assert_ne!(
                    packet[header_len..plain.len()],
                    plain[header_len..],
                    "{profile:?} payload encrypted"
                );
            }
            assert_eq!(packet[..header_len], plain[..header_len], "header in clear");
            let len = inbound.unprotect_rtp(&mut packet).unwrap();
            assert_eq!(packet[..len], plain[..], "{profile:?}");
        }
    }
}

#[test]
fn rtcp_round_trip_every_profile_and_the_index_advances() {
    for profile in PROFILES {
        let (mut outbound, mut inbound) = session(profile);
        let plain = rtcp_packet(0x1111_2222);
        let mut words = Vec::new();
        for _ in 0..3 {
            let mut packet = protect_rtcp(&mut outbound, &plain);
            assert_ne!(packet[8..plain.len()], plain[8..], "{profile:?} encrypted");
            let word_at = match profile {
                Profile::Aes128CmHmacSha1_80 => plain.len(),
                _ => packet.len() - 4,
            };
            words.push(u32::from_be_bytes(
                packet[word_at..word_at + 4].try_into().unwrap(),
            ));
            let len = inbound.unprotect_rtcp(&mut packet).unwrap();
            assert_eq!(packet[..len], plain[..], "{profile:?}");
        }
        assert_eq!(
            words,
            [0x8000_0000, 0x8000_0001, 0x8000_0002],
            "{profile:?}"
        );
    }
}

#[test]
fn the_peers_key_does_not_open_our_packets() {
    for profile in PROFILES {
        let (outbound, _) = session(profile);
        let material: Vec<u8> = (0..profile.keying_material_len())
            .map(|i| (i * 37 + 11) as u8)
            .collect();
        let (_, remote) = split_keying_material(profile, &material, true).unwrap();
        let (plain, header_len) = rtp_packet(9, 1, 100);
        let mut packet = protect(&outbound, &plain, header_len, 0);
        assert_eq!(
            Inbound::new(&remote).unprotect_rtp(&mut packet),
            Err(SrtpError::AuthenticationFailed),
            "{profile:?}"
        );
    }
}

#[test]
fn tampering_any_byte_fails_authentication() {
    for profile in PROFILES {
        let (mut outbound, _) = session(profile);
        let (plain, header_len) = rtp_packet(77, 0xabcd_0001, 40);
        let protected = protect(&outbound, &plain, header_len, 0);
        for at in 0..protected.len() {
            let mut packet = protected.clone();
            packet[at] ^= 0x01;
            let (_, mut inbound) = session(profile);
            let result = inbound.unprotect_rtp(&mut packet);
            // A flipped CC or X bit may make the header run past the packet instead.
            assert!(
                matches!(
                    result,
                    Err(SrtpError::AuthenticationFailed | SrtpError::TooShort)
                ),
                "{profile:?} RTP byte {at}: {result:?}"
            );
        }

        let plain = rtcp_packet(0x5eed);
        let protected = protect_rtcp(&mut outbound, &plain);
        for at in 0..protected.len() {
            let mut packet = protected.clone();
            packet[at] ^= 0x01;
            let (_, mut inbound) = session(profile);
            assert_eq!(
                inbound.unprotect_rtcp(&mut packet),
                Err(SrtpError::AuthenticationFailed),
                "{profile:?} RTCP byte {at}"
            );
        }
    }
}

#[test]
fn replays_are_refused_and_late_packets_inside_the_window_accepted_once() {
    for profile in PROFILES {
        let (mut outbound, mut inbound) = session(profile);
        let ssrc = 0x0102_0304;
        let sealed: Vec<Vec<u8>> = (100..=2000u16)
            .map(|seq| {
                let (plain, header_len) = rtp_packet(seq, ssrc, 20);
                protect(&outbound, &plain, header_len, 0)
            })
            .collect();
        let open = |inbound: &mut Inbound, seq: u16| {
            let mut packet = sealed[usize::from(seq - 100)].clone();
            inbound.unprotect_rtp(&mut packet).map(|_| ())
        };

        open(&mut inbound, 1000).unwrap();
        assert_eq!(open(&mut inbound, 1000), Err(SrtpError::Replayed));
        open(&mut inbound, 1500).unwrap();
        // Late but inside the 1024-packet window: once.
        open(&mut inbound, 1200).unwrap();
        assert_eq!(open(&mut inbound, 1200), Err(SrtpError::Replayed));
        open(&mut inbound, 500).unwrap(); // 1500 - 500 = 1000 < 1024
        assert_eq!(open(&mut inbound, 476), Err(SrtpError::Replayed)); // 1024 behind
        open(&mut inbound, 477).unwrap();

        let plain = rtcp_packet(ssrc);
        let first = protect_rtcp(&mut outbound, &plain);
        let second = protect_rtcp(&mut outbound, &plain);
        inbound.unprotect_rtcp(&mut second.clone()).unwrap();
        assert_eq!(
            inbound.unprotect_rtcp(&mut second.clone()),
            Err(SrtpError::Replayed)
        );
        inbound.unprotect_rtcp(&mut first.clone()).unwrap();
        assert_eq!(
            inbound.unprotect_rtcp(&mut first.clone()),
            Err(SrtpError::Replayed)
        );
    }
}

#[test]
fn roc_is_estimated_across_the_sequence_number_wrap() {
    for profile in PROFILES {
        let (outbound, mut inbound) = session(profile);
        let ssrc = 0x0bad_cafe;
        // The sender's extended sequence numbers 65530 ..= 65536 + 10: ROC 0, then 1.
        let sealed: Vec<(u64, Vec<u8>, Vec<u8>)> = (65530u64..65546)
            .map(|extended| {
                let (plain, header_len) = rtp_packet(extended as u16, ssrc, 30);
                let protected = protect(&outbound, &plain, header_len, (extended >> 16) as u32);
                (extended, plain, protected)
            })
            .collect();
        // Reordered across the wrap: 65532 arrives after 65536 (ROC 1, SEQ 0).
        let order = [0, 1, 3, 4, 5, 6, 7, 2, 8, 10, 9, 11, 12, 13, 14, 15];
        for i in order {
            let (extended, plain, protected) = &sealed[i];
            let mut packet = protected.clone();
            let len = inbound
                .unprotect_rtp(&mut packet)
                .unwrap_or_else(|e| panic!("{profile:?} extended seq {extended}: {e}"));
            assert_eq!(packet[..len], plain[..]);
        }
        // A packet sealed under the wrong ROC does not open.
        let (plain, header_len) = rtp_packet(20, ssrc, 30);
        let mut stale = protect(&outbound, &plain, header_len, 0);
        assert_eq!(
            inbound.unprotect_rtp(&mut stale),
            Err(SrtpError::AuthenticationFailed),
            "{profile:?}"
        );
    }
}

#[test]
fn a_forged_packet_changes_no_state() {
    for profile in PROFILES {
        let (outbound, mut inbound) = session(profile);
        let ssrc = 42;
        let (plain, header_len) = rtp_packet(65000, ssrc, 10);
        inbound
            .unprotect_rtp(&mut protect(&outbound, &plain, header_len, 0))
            .unwrap();
        // A forgery far ahead: were it recorded, 65001 would then be taken as ROC -1 or
        // refused as too old.
        let (forged, _) = rtp_packet(30000, ssrc, 26);
        assert_eq!(
            inbound.unprotect_rtp(&mut forged.clone()),
            Err(SrtpError::AuthenticationFailed)
        );
        let (plain, header_len) = rtp_packet(65001, ssrc, 10);
        inbound
            .unprotect_rtp(&mut protect(&outbound, &plain, header_len, 0))
            .unwrap();
    }
}

#[test]
fn a_peer_is_held_to_a_bounded_number_of_ssrcs() {
    let (outbound, mut inbound) = session(Profile::AeadAes128Gcm);
    for ssrc in 0..32 {
        let (plain, header_len) = rtp_packet(1, ssrc, 10);
        inbound
            .unprotect_rtp(&mut protect(&outbound, &plain, header_len, 0))
            .unwrap();
    }
    let (plain, header_len) = rtp_packet(1, 32, 10);
    assert_eq!(
        inbound.unprotect_rtp(&mut protect(&outbound, &plain, header_len, 0)),
        Err(SrtpError::TooManySources)
    );
    // The known ones go on.
    let (plain, header_len) = rtp_packet(2, 31, 10);
    inbound
        .unprotect_rtp(&mut protect(&outbound, &plain, header_len, 0))
        .unwrap();
}

#[test]
fn truncated_packets_are_errors() {
    for profile in PROFILES {
        let (mut outbound, _) = session(profile);
        let (plain, header_len) = rtp_packet(5, 6, 50);
        let protected = protect(&outbound, &plain, header_len, 0);
        for len in 0..protected.len() {
            let (_, mut inbound) = session(profile);
            let result = inbound.unprotect_rtp(&mut protected[..len].to_vec());
            assert!(result.is_err(), "{profile:?} RTP cut to {len}");
            if len < header_len + profile.rtp_overhead() {
                assert_eq!(
                    result,
                    Err(SrtpError::TooShort),
                    "{profile:?} RTP cut to {len}"
                );
            }
        }

        let protected = protect_rtcp(&mut outbound, &rtcp_packet(7));
        for len in 0..protected.len() {
            let (_, mut inbound) = session(profile);
            let result = inbound.unprotect_rtcp(&mut protected[..len].to_vec());
            assert!(result.is_err(), "{profile:?} RTCP cut to {len}");
            if len < 8 + profile.rtcp_overhead() {
                assert_eq!(
                    result,
                    Err(SrtpError::TooShort),
                    "{profile:?} RTCP cut to {len}"
                );
            }
        }
    }
}

#[test]
fn protect_rtcp_refuses_short_buffers() {
    let (mut outbound, _) = session(Profile::AeadAes128Gcm);
    let plain = rtcp_packet(1);
    let mut exact = plain.clone();
    assert_eq!(
        outbound.protect_rtcp(&mut exact, plain.len()),
        Err(SrtpError::TooShort)
    );
    assert_eq!(
        outbound.protect_rtcp(&mut [0; 40], 7),
        Err(SrtpError::TooShort)
    );
}

#[test]
#[should_panic(expected = "RTP packet layout")]
fn protect_rtp_without_room_for_the_tag_is_a_caller_bug() {
    let (outbound, _) = session(Profile::AeadAes128Gcm);
    let (mut plain, header_len) = rtp_packet(1, 1, 10);
    let len = plain.len();
    outbound.protect_rtp(&mut plain, header_len, len, 0);
}

proptest! {
    #[test]
    fn unprotect_never_panics_on_random_bytes(
        profile in prop::sample::select(PROFILES.to_vec()),
        bytes in prop::collection::vec(any::<u8>(), 0..1600),
    ) {
        let (_, mut inbound) = session(profile);
        prop_assert!(inbound.unprotect_rtp(&mut bytes.clone()).is_err());
        prop_assert!(inbound.unprotect_rtcp(&mut bytes.clone()).is_err());
    }

    #[test]
    fn unprotect_never_accepts_a_mutated_packet(
        profile in prop::sample::select(PROFILES.to_vec()),
        seq in any::<u16>(),
        payload_len in 0usize..1300,
        edits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let (mut outbound, _) = session(profile);
        let (plain, header_len) = rtp_packet(seq, 99, payload_len);
        let rtp = protect(&outbound, &plain, header_len, 0);
        let rtcp = protect_rtcp(&mut outbound, &rtcp_packet(99));
        for protected in [rtp, rtcp] {
            let mut mutated = protected.clone();
            for (at, xor) in &edits {
                mutated[at.index(protected.len())] ^= xor;
            }
            let truncated = protected[..cut.index(protected.len())].to_vec();
            for mut packet in [mutated, truncated] {
                let (_, mut inbound) = session(profile);
                if packet != protected {
                    prop_assert!(inbound.unprotect_rtp(&mut packet.clone()).is_err());
                    prop_assert!(inbound.unprotect_rtcp(&mut packet).is_err());
                }
            }
        }
    }
}
