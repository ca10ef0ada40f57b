//! The checked-in example config parses, equals the defaults, and names every option the defaults have.

use citybrain::config::Config;

fn leaf_paths(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(v, &p, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn example_config_parses_and_covers_every_option() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/citybrain.example.toml"
    ))
    .expect("citybrain.example.toml is checked in");
    let parsed = Config::from_toml(&text).expect("the example parses and validates");
    assert_eq!(parsed, Config::default(), "the example shows the defaults");

    let mut want = Vec::new();
    leaf_paths(
        &toml::Value::try_from(Config::default()).unwrap(),
        "",
        &mut want,
    );
    let mut have = Vec::new();
    leaf_paths(
        &toml::from_str::<toml::Value>(&text).unwrap(),
        "",
        &mut have,
    );
    let missing: Vec<_> = want.iter().filter(|p| !have.contains(p)).collect();
    assert!(
        missing.is_empty(),
        "options missing from citybrain.example.toml (run tools/gen_example_config.py): {missing:?}"
    );
    assert!(
        want.len() > 50,
        "sanity: the config has many options ({})",
        want.len()
    );
}

#[test]
fn errors_name_the_offending_field() {
    let err = Config::from_toml("[core]\nworkerz = 2\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("workerz"), "{err}");
    let err = Config::from_toml("[broker]\nlisten = \"0.0.0.0:1883\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("broker.listen"), "{err}");
    let err = Config::from_toml("[simulator]\nspeed = -1.0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("simulator.speed"), "{err}");
    let err = Config::from_toml("[dashboard]\nlisten_addr = 5\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("listen_addr"), "{err}");
}
