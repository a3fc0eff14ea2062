//! `jobfleet.example.toml` documents every key at its default: it must load, and load to
//! exactly the built-in defaults, so the file cannot drift from `common/src/config.rs`.

use std::path::Path;

use jobfleet_common::Config;

#[test]
fn the_example_file_is_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobfleet.example.toml");
    let loaded = Config::load(Some(&path), [], &[]).expect("the example loads");
    assert_eq!(loaded, Config::default());
}
