//! The DTLS record layer (RFC 6347 4.1), read once str0m is gone: all a live viewer
//! has left to say in DTLS is an alert, close_notify when it leaves. The alert itself
//! is sealed with keys only str0m had, so what can be checked is its record's shape.

const HEADER_LEN: usize = 13;
const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
/// The last content type of RFC 9146 (tls12_cid); 20..=25 are all DTLS 1.2 knows.
const LAST_CONTENT_TYPE: u8 = 25;
/// DTLS 1.0 and 1.2 on the wire.
const VERSIONS: [[u8; 2]; 2] = [[0xfe, 0xff], [0xfe, 0xfd]];
/// A sealed alert: 2 bytes of plaintext plus, at most, a block cipher's IV, MAC and
/// padding (the AEAD suites add 24 to 32).
const SEALED_ALERT_LEN: std::ops::RangeInclusive<usize> = 2..=64;

/// Whether `datagram` carries an alert, if it is a run of well-formed DTLS 1.x records;
/// None if it is not. An alert counts only sealed (epoch 1 or later, as every alert
/// after a handshake is) and of an alert's size.
pub fn carries_alert(mut datagram: &[u8]) -> Option<bool> {
    if datagram.is_empty() {
        return None;
    }
    let mut alert = false;
    while !datagram.is_empty() {
        let header = datagram.get(..HEADER_LEN)?;
        let content_type = header[0];
        let epoch = u16::from_be_bytes([header[3], header[4]]);
        let len = usize::from(u16::from_be_bytes([header[11], header[12]]));
        if !(CHANGE_CIPHER_SPEC..=LAST_CONTENT_TYPE).contains(&content_type)
            || !VERSIONS.contains(&[header[1], header[2]])
        {
            return None;
        }
        let rest = datagram.get(HEADER_LEN + len..)?;
        if content_type == ALERT {
            if epoch == 0 || !SEALED_ALERT_LEN.contains(&len) {
                return None;
            }
            alert = true;
        }
        datagram = rest;
    }
    Some(alert)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(content_type: u8, epoch: u16, body_len: usize) -> Vec<u8> {
        let mut r = vec![content_type, 0xfe, 0xfd];
        r.extend_from_slice(&epoch.to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0, 0, 7]);
        r.extend_from_slice(&(body_len as u16).to_be_bytes());
        r.extend(std::iter::repeat_n(0xab, body_len));
        r
    }

    #[test]
    fn a_sealed_alert_record_is_an_alert() {
        assert_eq!(carries_alert(&record(ALERT, 1, 26)), Some(true));
        let mut two = record(23, 1, 100);
        two.extend(record(ALERT, 1, 26));
        assert_eq!(carries_alert(&two), Some(true));
        assert_eq!(carries_alert(&record(23, 1, 100)), Some(false));
    }

    #[test]
    fn runts_and_malformed_records_are_not() {
        assert_eq!(carries_alert(&[]), None);
        for first in 0..=255u8 {
            assert_eq!(carries_alert(&[first]), None, "lone {first:#x}");
        }
        let good = record(ALERT, 1, 26);
        for len in 1..good.len() {
            assert_eq!(carries_alert(&good[..len]), None, "cut at {len}");
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(carries_alert(&long), None, "a byte after the last record");
        assert_eq!(carries_alert(&record(ALERT, 0, 2)), None, "plaintext alert");
        assert_eq!(carries_alert(&record(ALERT, 1, 1)), None, "too short");
        assert_eq!(carries_alert(&record(ALERT, 1, 500)), None, "too long");
        assert_eq!(carries_alert(&record(19, 1, 26)), None, "content type");
        let mut tls = good;
        tls[1..3].copy_from_slice(&[3, 3]);
        assert_eq!(carries_alert(&tls), None, "TLS, not DTLS");
    }
}
