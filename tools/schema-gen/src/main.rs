//! `schema-gen`: the Kong meta.json generator and the filter's config parser on the command line.
//!
//! ```text
//! schema-gen meta [OUT]        write the Kong meta.json (default: stdout)
//! schema-gen diff FILE         exit 1 when FILE differs from a fresh generation
//! schema-gen check FILE...     parse each config file like on_configure does; `ok` or the error
//! schema-gen check-lines       one JSON document per stdin line → one JSON verdict per line
//! ```

use std::io::{BufRead, Write};
use std::process::ExitCode;

use serde_json::json;

const USAGE: &str = "usage: schema-gen meta [OUT] | diff FILE | check FILE... | check-lines";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("meta") => meta(args.get(1).map(String::as_str)),
        Some("diff") => match args.get(1) {
            Some(file) => diff(file),
            None => Err(USAGE.to_string()),
        },
        Some("check") if args.len() > 1 => check_files(&args[1..]),
        Some("check-lines") => check_lines(),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("schema-gen: {message}");
            ExitCode::from(2)
        }
    }
}

fn generated() -> Result<String, String> {
    schema_gen::kong_meta_text().map_err(|problems| {
        format!(
            "the config types cannot be expressed as a Kong draft-4 schema:\n  {}",
            problems.join("\n  ")
        )
    })
}

fn meta(out: Option<&str>) -> Result<ExitCode, String> {
    let text = generated()?;
    match out {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))?,
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn diff(file: &str) -> Result<ExitCode, String> {
    let fresh = generated()?;
    let committed = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    if committed == fresh {
        println!("{file} is up to date");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{file} differs from the config types: run `make schema` and commit it");
        Ok(ExitCode::FAILURE)
    }
}

fn check_files(files: &[String]) -> Result<ExitCode, String> {
    let mut failed = false;
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
        match schema_gen::check(&bytes) {
            Ok(()) => println!("{file}: ok"),
            Err(e) => {
                failed = true;
                println!("{file}: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Batch mode for tests: a verdict per input line, `{"ok": true}` or
/// `{"ok": false, "path": "providers[0].name", "message": "..."}`.
fn check_lines() -> Result<ExitCode, String> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let verdict = match schema_gen::check(line.as_bytes()) {
            Ok(()) => json!({ "ok": true }),
            Err(e) => json!({ "ok": false, "path": e.path, "message": e.message }),
        };
        writeln!(stdout, "{verdict}").map_err(|e| e.to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}
