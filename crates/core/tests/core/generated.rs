//! Generated data matches its generator: `tools/gen-councils.py` run on the CSV it
//! reads gives exactly the committed `data/councils.json`. Skipped (with a note) where
//! python3 or the CSV (kept beside the repository, in `../shared/data`) is absent.

use std::path::Path;
use std::process::Command;

#[test]
fn council_table_is_what_the_generator_makes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let csv = root.join("../shared/data/uk-local-authorities.csv");
    if !csv.exists() {
        eprintln!("skipped: {} is absent", csv.display());
        return;
    }
    let output = match Command::new("python3")
        .arg(root.join("tools/gen-councils.py"))
        .arg("--input")
        .arg(&csv)
        .args(["--output", "-"])
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            eprintln!("skipped: python3 does not run: {e}");
            return;
        }
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let committed = std::fs::read(root.join("crates/core/data/councils.json")).unwrap();
    assert!(
        output.stdout == committed,
        "crates/core/data/councils.json differs from what tools/gen-councils.py makes: regenerate it"
    );
}
