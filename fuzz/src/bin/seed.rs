//! Writes the seed corpora of every fuzz target: `seed <corpus root>`
//! (`cargo xtask fuzz --seed` runs it).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(root) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: seed <corpus root>");
        return ExitCode::from(2);
    };
    match swarm_fuzz::seed::write_corpora(&root) {
        Ok(()) => {
            println!("seed corpora written under {}", root.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: could not write the seed corpora: {e}");
            ExitCode::FAILURE
        }
    }
}
