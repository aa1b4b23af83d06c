//! The bounded decoder on arbitrary payloads, for types with lengths inside (strings, vectors,
//! maps, nested options and enums): it never panics, never claims memory beyond its ladder
//! limit (the fuzzer's own RSS limit would catch it), and what it decodes round-trips.
#![no_main]

use bevy_peer_message::internals::codec::{decode_bounded, encode_into};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Shape {
    Dot,
    Line(f32, f32),
    Poly(Vec<(i16, i16)>),
    Named { name: String, tags: Vec<String> },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Message {
    id: u64,
    text: String,
    shapes: Vec<Shape>,
    scores: BTreeMap<u32, Option<Vec<u8>>>,
    nested: Option<Box<Message>>,
}

fn check<T>(data: &[u8], max: usize)
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = decode_bounded::<T>(data, max) {
        let mut out = Vec::new();
        encode_into(&value, &mut out).expect("a decoded value encodes");
        let again: T = decode_bounded(&out, max.max(out.len())).expect("and decodes again");
        // NaN floats are not equal to themselves; compare the bytes instead.
        let mut twice = Vec::new();
        encode_into(&again, &mut twice).expect("encodes");
        assert_eq!(out, twice);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let max = 1 << 20;
    match selector % 4 {
        0 => check::<Message>(data, max),
        1 => check::<Vec<String>>(data, max),
        2 => check::<BTreeMap<String, Vec<u64>>>(data, max),
        _ => check::<(u8, Option<String>, Vec<Shape>)>(data, 1 << 10),
    }
});
