//! Cluster envelopes (what one node publishes to another over Redis): `Envelope::decode` on
//! arbitrary payloads cut into length-prefixed messages, each decoded one fed to the receiver's
//! per-link sequence check. Never panics; what decodes round-trips; and the check never lets a
//! data envelope that skips a sequence number through as a plain `Apply` (a lost envelope must
//! always cost a resync: I6).
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tern_server::cluster::envelope::Envelope;
use tern_server::cluster::link::{LinkTable, Verdict};

fuzz_target!(|data: &[u8]| {
    let t = Instant::now();
    let mut links = LinkTable::new(Duration::from_secs(4));
    // The model: per sender, its boot and the last data number the table accepted.
    let mut model: HashMap<String, (u64, u64)> = HashMap::new();
    let mut rest = data;
    let mut i = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let take = usize::from(len).min(tail.len());
        let (msg, next) = tail.split_at(take);
        rest = next;
        i += 1;
        let Ok(e) = Envelope::decode(msg) else { continue };
        let again = e.encode().expect("re-encode");
        assert_eq!(Envelope::decode(&again).expect("re-decode"), e);
        let is_data = e.body.is_data();
        let bye = matches!(e.body, tern_server::cluster::envelope::Body::Bye);
        let now = t + Duration::from_millis(i * 10);
        let verdict = links.check(&e.from, e.boot, e.seq, is_data, bye, now);
        if is_data && verdict == Verdict::Apply {
            if let Some(&(boot, last)) = model.get(&e.from)
                && boot == e.boot
            {
                assert_eq!(e.seq, last + 1, "a skipped number was applied without a resync");
            }
        }
        if is_data && matches!(verdict, Verdict::Apply | Verdict::Gap) {
            model.insert(e.from.clone(), (e.boot, e.seq));
        } else if !is_data {
            let entry = model.entry(e.from.clone()).or_insert((e.boot, e.seq));
            if entry.0 != e.boot {
                *entry = (e.boot, e.seq);
            }
            entry.1 = entry.1.max(e.seq);
        }
    }
});
