//! The committed `include/ringfort.h` must be exactly what cbindgen generates from the
//! source and `cbindgen.toml` today. `RINGFORT_BLESS=1` rewrites it instead of failing.

use std::path::Path;

fn generate() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("UTF-8 header")
}

#[test]
fn committed_header_matches_a_fresh_generation() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/ringfort.h");
    let fresh = generate();
    if std::env::var_os("RINGFORT_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("writing the header");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let line = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .map_or(
                committed.lines().count().min(fresh.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "ffi/include/ringfort.h is stale (first difference at line {line}); regenerate it \
             with `RINGFORT_BLESS=1 cargo test -p ringfort-ffi --test header` and commit it"
        );
    }
}

/// Every name the header declares carries the library's prefix.
#[test]
fn every_declared_name_is_prefixed() {
    let fresh = generate();
    let mut names = Vec::new();
    for line in fresh.lines().map(str::trim) {
        if line.starts_with("//") || line.starts_with('*') || line.starts_with("/*") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("#define ") {
            names.push(rest.split_whitespace().next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("typedef ") {
            if let Some(at) = rest.find("(*") {
                let name = &rest[at + 2..];
                names.push(name[..name.find(')').unwrap()].to_string());
                continue;
            }
            let name = rest
                .trim_end_matches(';')
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .rfind(|s| !s.is_empty())
                .unwrap();
            names.push(name.to_string());
        } else if line.contains("(*") {
            // A callback field of rf_handler: its name is the field, not a declaration.
        } else if let Some(open) = line.find('(') {
            if line.ends_with(';') || line.ends_with(',') || line.ends_with('(') {
                let head = &line[..open];
                if let Some(name) = head.split([' ', '*']).rfind(|s| !s.is_empty()) {
                    if !line.starts_with('(') && head.contains(' ') {
                        names.push(name.to_string());
                    }
                }
            }
        } else if line.starts_with("RF_") {
            names.push(line.split([' ', ',']).next().unwrap().to_string());
        }
    }
    assert!(names.len() > 80, "only {} names found", names.len());
    for n in names {
        assert!(
            n.starts_with("rf_") || n.starts_with("RF_") || n == "RINGFORT_H",
            "{n} lacks the rf_/RF_ prefix"
        );
    }
}
