use super::*;

/// A server frame: like a client frame without the mask.
fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 65_535 => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// What a server sees: the header with the mask bit cleared, the payload unmasked.
fn unmask(frame: &[u8]) -> (FrameHeader, Vec<u8>) {
    let mut view = frame.to_vec();
    assert_eq!(view[1] & 0x80, 0x80, "client frames are masked");
    view[1] &= 0x7f;
    let h = frame_header(&view).unwrap().unwrap();
    let mask: [u8; 4] = frame[h.payload_at..h.payload_at + 4].try_into().unwrap();
    let payload = frame[h.payload_at + 4..]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    assert_eq!(h.end() + 4, frame.len());
    (h, payload)
}

#[test]
fn frames_decode_at_every_length_encoding_and_every_cut() {
    for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
        let payload = vec![b'a'; len];
        let f = server_frame(true, OP_TEXT, &payload);
        let header = f.len() - len;
        for cut in 0..header {
            assert_eq!(frame_header(&f[..cut]), Ok(None), "len {len} cut {cut}");
        }
        for cut in header..=f.len().min(header + 300) {
            let h = frame_header(&f[..cut]).unwrap().unwrap();
            assert_eq!(
                (h.fin, h.opcode, h.payload_at, h.len),
                (true, OP_TEXT, header, len)
            );
            assert_eq!(h.end(), f.len());
        }
    }
}

#[test]
fn client_frames_round_trip() {
    for (fin, opcode) in [(true, OP_TEXT), (false, OP_BINARY), (true, OP_CONTINUATION)] {
        for len in [0usize, 5, 125, 126, 65_535, 65_536, 70_000] {
            for mask in [[0, 0, 0, 0], [1, 2, 3, 4], [0xff, 0x80, 0x7f, 0x01]] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let mut out = b"before".to_vec();
                encode_client_frame(&mut out, fin, opcode, &payload, mask);
                assert_eq!(&out[..6], b"before");
                let (h, got) = unmask(&out[6..]);
                assert_eq!((h.fin, h.opcode, h.len), (fin, opcode, len));
                assert_eq!(got, payload);
            }
        }
    }
}

#[test]
fn close_frames() {
    let mut out = Vec::new();
    encode_close(&mut out, 1008, b"too slow", [9, 8, 7, 6]);
    let (h, payload) = unmask(&out);
    assert_eq!((h.opcode, h.fin), (OP_CLOSE, true));
    assert_eq!(close_code(&payload), 1008);
    assert_eq!(close_reason(&payload), b"too slow");
    // The reason is cut to fit a control frame.
    out.clear();
    encode_close(&mut out, 1000, &[b'x'; 200], [1, 2, 3, 4]);
    let (h, payload) = unmask(&out);
    assert_eq!((h.len, payload.len()), (125, 125));
    assert_eq!(close_code(&[0x03, 0xF0, b'x']), 1008);
    assert_eq!(close_reason(&[0x03, 0xF0, b'x']), b"x");
    assert_eq!(close_code(&[]), CLOSE_NO_STATUS);
    assert_eq!(close_code(&[3]), CLOSE_NO_STATUS);
    assert_eq!(close_reason(&[3]), b"");
}

#[test]
fn bad_frames_are_errors() {
    let bad = |bytes: &[u8]| frame_header(bytes).unwrap_err();
    assert_eq!(bad(&[0x81, 0x80 | 1, 0, 0, 0, 0, b'x']), FrameError::Masked);
    assert_eq!(bad(&[0xC1, 1, b'x']), FrameError::ReservedBits);
    assert_eq!(bad(&[0x83, 0]), FrameError::BadOpcode(3));
    assert_eq!(bad(&[0x8B, 0]), FrameError::BadOpcode(0xB));
    assert_eq!(
        bad(&[OP_PING, 0]),
        FrameError::BadControl,
        "fragmented ping"
    );
    assert_eq!(
        bad(&server_frame(true, OP_CLOSE, &[0; 126])[..4]),
        FrameError::BadControl
    );
    let mut huge = vec![0x82, 127];
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    assert!(matches!(bad(&huge), FrameError::TooLong(_)));
    let mut at_limit = vec![0x82, 127];
    at_limit.extend_from_slice(&(MESSAGE_BYTES_MAX as u64).to_be_bytes());
    assert_eq!(
        frame_header(&at_limit).unwrap().unwrap().len,
        MESSAGE_BYTES_MAX
    );
    // Every two-byte header is an answer, never a panic.
    for b0 in 0..=255u8 {
        for b1 in 0..=255u8 {
            let _ = frame_header(&[b0, b1]);
        }
    }
}

#[test]
fn fragments_and_control_frames_in_sequence() {
    let frames = [
        server_frame(false, OP_TEXT, b"{\"a\""),
        server_frame(true, OP_PING, b"p"),
        server_frame(false, OP_CONTINUATION, b":"),
        server_frame(true, OP_CONTINUATION, b"1}"),
        server_frame(true, OP_BINARY, b"\x00"),
        server_frame(true, OP_CLOSE, &[0x03, 0xE8]),
    ]
    .concat();
    let mut seq = Sequence::new();
    let mut at = 0;
    let mut parts = Vec::new();
    let mut message = Vec::new();
    while at < frames.len() {
        let h = frame_header(&frames[at..]).unwrap().unwrap();
        let part = seq.next(&h).unwrap();
        if matches!(part, Part::First | Part::Continuation { .. }) {
            message.extend_from_slice(&frames[at + h.payload_at..at + h.end()]);
        }
        parts.push(part);
        at += h.end();
    }
    assert_eq!(
        parts,
        [
            Part::First,
            Part::Control,
            Part::Continuation {
                opcode: OP_TEXT,
                last: false
            },
            Part::Continuation {
                opcode: OP_TEXT,
                last: true
            },
            Part::Whole,
            Part::Control
        ]
    );
    assert_eq!(message, b"{\"a\":1}");
    assert!(!seq.mid_message());

    let h = |fin, opcode| {
        frame_header(&server_frame(fin, opcode, b""))
            .unwrap()
            .unwrap()
    };
    let mut seq = Sequence::new();
    assert_eq!(
        seq.next(&h(true, OP_CONTINUATION)),
        Err(FrameError::BadSequence)
    );
    seq.next(&h(false, OP_BINARY)).unwrap();
    assert!(seq.mid_message());
    assert_eq!(seq.next(&h(true, OP_TEXT)), Err(FrameError::BadSequence));
}

#[test]
fn upgrade_requests_and_answers() {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    assert_eq!(accept_key(key), accept, "RFC 6455 §1.3's example");
    let req = upgrade_request("h:1", "/base", key, Some("tok"));
    let req = String::from_utf8(req).unwrap();
    assert!(req.starts_with("GET /base/api/ws HTTP/1.1\r\nHost: h:1\r\n"));
    assert!(req.contains("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"));
    assert!(req.contains("\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    assert!(req.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    assert!(req.ends_with("Authorization: Bearer tok\r\n\r\n"));
    let req = String::from_utf8(upgrade_request("h", "", key, None)).unwrap();
    assert!(req.starts_with("GET /api/ws HTTP/1.1\r\n") && !req.contains("Authorization"));

    let ok = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n\x01\x02hi"
    );
    let head_len = ok.len() - 4;
    for cut in 0..head_len {
        assert_eq!(parse_upgrade(&ok.as_bytes()[..cut], accept), Ok(None));
    }
    assert_eq!(
        parse_upgrade(ok.as_bytes(), accept),
        Ok(Some(Upgrade::Accepted { head_len }))
    );
    assert_eq!(
        parse_upgrade(ok.as_bytes(), "wrong"),
        Err(UpgradeError::WrongAccept)
    );
    let no_upgrade = ok.replace("Upgrade: WebSocket\r\n", "");
    assert_eq!(
        parse_upgrade(no_upgrade.as_bytes(), accept),
        Err(UpgradeError::NotWebSocket)
    );
    let no = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found";
    assert_eq!(
        parse_upgrade(no, accept),
        Ok(Some(Upgrade::Refused {
            status: 404,
            reason: "Not Found".into(),
            head_len: no.len() - 9,
            body_len: 9
        }))
    );
    assert!(matches!(
        parse_upgrade(b"HTTP/9 101\r\n\r\n", accept),
        Err(UpgradeError::Http(_))
    ));
    let big = vec![b'H'; UPGRADE_HEAD_BYTES_MAX];
    assert_eq!(parse_upgrade(&big, accept), Err(UpgradeError::HeadTooLarge));
}

#[test]
fn keys_are_base64_of_16_bytes_and_differ() {
    let a = key_from_seed(1);
    assert_eq!(a.len(), 24);
    assert!(a.ends_with("=="));
    assert_ne!(a, key_from_seed(2));
    assert_eq!(a, key_from_seed(1));
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"Ma"), "TWE=");
    assert_eq!(base64(b"M"), "TQ==");
}
