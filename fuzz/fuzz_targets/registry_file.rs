//! The namespace registry file (`auth::registry::parse_file`), which `Registry::open`
//! reads at start-up. Nothing a damaged or hostile file holds may panic the server;
//! what parses must be exactly what the documented format says.
//!
//! The first byte picks how the rest becomes a file: 0 as it is (its checksum almost
//! never matches, so this mostly probes the end line), 1 with a correct end line
//! appended (count and CRC), 2 with a correct CRC but a count from the mode byte, so
//! the line parser behind the checksum is reached.
#![no_main]

use flux::auth::registry::{parse_file, valid_name};
use flux::auth::token;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = rest.to_vec();
    if mode % 3 != 0 {
        if !file.ends_with(b"\n") {
            file.push(b'\n');
        }
        let lines = file.iter().filter(|&&b| b == b'\n').count() - 1;
        let count = if mode % 3 == 1 {
            lines
        } else {
            usize::from(mode / 3)
        };
        let crc = crc32fast::hash(&file);
        file.extend_from_slice(format!("end {count} {crc:08x}\n").as_bytes());
    }
    let map = match parse_file(&file) {
        Ok(map) => map,
        Err(why) => {
            assert!(!why.is_empty());
            return;
        }
    };
    // Every namespace is what the format allows, keyed by its own name.
    let mut again = String::from("flux-namespaces 1\n");
    for (name, ns) in &map {
        assert!(valid_name(name), "{name:?}");
        assert_eq!(&*ns.name, &**name);
        assert!(!ns.id.contains([' ', '\n']), "{:?}", ns.id);
        again.push_str(&format!("{name} {} ", ns.id));
        token::push_hex(&mut again, &ns.token_hash);
        again.push_str(&format!(" {}\n", ns.created_ms));
    }
    // Written back in the documented format, it reads back the same.
    let crc = crc32fast::hash(again.as_bytes());
    again.push_str(&format!("end {} {crc:08x}\n", map.len()));
    let reread = parse_file(again.as_bytes()).expect("a re-rendered registry parses");
    assert_eq!(reread.len(), map.len());
    for (name, ns) in &map {
        let r = &reread[name];
        assert_eq!(
            (&r.id, r.token_hash, r.created_ms),
            (&ns.id, ns.token_hash, ns.created_ms)
        );
    }
});
