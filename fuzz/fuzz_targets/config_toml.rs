//! The TOML config file: no panic, and an accepted file's settings written
//! back as TOML read the same.
#![no_main]

use headroom::config::parse_config_toml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match parse_config_toml(text) {
        Ok(map) => {
            for k in map.keys() {
                assert!(!k.contains('_'), "{k:?} is not a flag name");
            }
            let printed = toml::to_string(&map).expect("a map of strings is TOML");
            assert_eq!(parse_config_toml(&printed), Ok(map), "{printed}");
        }
        Err(errors) => assert!(!errors.is_empty()),
    }
});
