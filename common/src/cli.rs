//! Command-line parsing shared by the binaries.

use clap::Parser;
use clap::error::ErrorKind;

/// Parse `std::env::args` (and `SHOPSTREAM_*` env vars). On a bad flag or
/// value, print the error *and* the usage line, then exit with status 2.
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) => {
            let rendered = e.render().to_string();
            eprint!("{rendered}");
            if !rendered.contains("Usage:") {
                let mut cmd = T::command();
                eprintln!("\n{}", cmd.render_usage());
            }
            std::process::exit(2);
        }
    }
}
