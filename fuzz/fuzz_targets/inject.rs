//! `headroom inject` on any text: no panic; an accepted input is injected
//! once and for all (a second pass gives the same bytes), and its output
//! reads as YAML again with the same values, less what inject adds.
#![no_main]

use headroom::inject::{documents_as_json, inject, InjectOptions};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Both sides less what inject may add: the sidecar, its volume, empty
/// lists it made, shareProcessNamespace, the pod label
/// `headroom.dev/sidecar` and the empty labels and metadata made for it.
fn normalize(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("shareProcessNamespace");
            for key in ["containers", "initContainers", "volumes"] {
                if let Some(Value::Array(items)) = map.get_mut(key) {
                    items.retain(|i| i["name"] != "headroom" && i["name"] != "headroom-profiles");
                    if items.is_empty() {
                        map.remove(key);
                    }
                }
            }
            map.values_mut().for_each(normalize);
            if let Some(Value::Object(labels)) = map.get_mut("labels") {
                labels.remove("headroom.dev/sidecar");
            }
            for key in ["labels", "metadata"] {
                if map.get(key).is_some_and(|v| v.as_object().is_some_and(|o| o.is_empty())) {
                    map.remove(key);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

fuzz_target!(|text: &str| {
    let opts = InjectOptions::default();
    match inject(text, &opts) {
        Ok(out) => {
            assert_eq!(inject(&out, &opts).as_ref(), Ok(&out), "a second pass changed the output:\n{out}");
            let mut before = documents_as_json(text).expect("an accepted input reads as YAML");
            let mut after = documents_as_json(&out).expect("the output reads as YAML");
            before.iter_mut().for_each(normalize);
            after.iter_mut().for_each(normalize);
            assert_eq!(before, after, "values changed:\n{out}");
        }
        Err(e) => assert!(!e.problems.is_empty()),
    }
});
