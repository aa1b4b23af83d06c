//! The wire decoder on arbitrary packets: it never panics, never reads past the packet, and
//! whatever it decodes encodes back to the same bytes and decodes to the same records.
#![no_main]

use bevy_peer_message::internals::wire::{self, Record, Records};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

fn encode(record: &Record, out: &mut BytesMut) {
    match record {
        Record::Hello(h) => wire::encode_hello(out, h),
        Record::Auth(a) => wire::encode_auth(out, a),
        Record::Welcome => wire::encode_welcome(out),
        Record::Bye(r) => wire::encode_bye(out, *r),
        Record::Ack(n) => wire::encode_ack(out, *n),
        Record::Ping(n) => wire::encode_ping(out, *n),
        Record::Pong(n) => wire::encode_pong(out, *n),
        Record::Reliable { seq, kind, payload } => wire::encode_reliable(out, *seq, *kind, payload),
        Record::Fragment {
            seq,
            kind,
            total,
            chunk,
        } => wire::encode_fragment(out, *seq, *kind, *total, chunk),
        Record::Unreliable { kind, payload } => wire::encode_unreliable(out, *kind, payload),
        Record::Sequenced { kind, seq, payload } => {
            wire::encode_sequenced(out, *kind, *seq, payload)
        }
        // Read only as far as its version: nothing to compare.
        Record::ForeignHello(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let packet = Bytes::copy_from_slice(data);
    let Ok(records) = Records::checked(packet) else {
        return;
    };
    let decoded: Vec<Record> = records.map_while(Result::ok).collect();
    if decoded.iter().any(|r| matches!(r, Record::ForeignHello(_))) {
        return;
    }
    let mut again = BytesMut::new();
    for r in &decoded {
        encode(r, &mut again);
    }
    assert!(again.len() <= data.len());
    assert_eq!(
        &data[..again.len()],
        &again[..],
        "re-encoding gives the same bytes"
    );
    if !again.is_empty() {
        let round: Vec<Record> = Records::new(again.freeze())
            .collect::<Result<_, _>>()
            .expect("re-encoded records decode");
        assert_eq!(round, decoded);
    }
});
